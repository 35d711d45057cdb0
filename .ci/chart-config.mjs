// Reads rendered chart manifests (stdin) and validates the eproxy.yaml of the ConfigMap with eProxy's
// own configuration parser, with the Deployment's environment and base directory /etc/eproxy: the
// chart's templating (admin listener, values) must yield a configuration `eproxy serve` accepts.
// Needs Node.js 24 (runs src/config.ts): npx --no-install node .ci/chart-config.mjs < render.yaml
import { parseAllDocuments, parse } from "yaml";

const { parseConfig } = await import("../src/config.ts");
let input = "";
for await (const chunk of process.stdin) input += chunk;
const docs = parseAllDocuments(input).map((d) => d.toJS());
const cm = docs.find((d) => d?.kind === "ConfigMap" && d.data?.["eproxy.yaml"]);
const deployment = docs.find((d) => d?.kind === "Deployment");
if (!cm || !deployment) {
  console.log("chart-config: no ConfigMap with eproxy.yaml, or no Deployment");
  process.exit(1);
}
const env = Object.fromEntries(
  (deployment.spec.template.spec.containers[0].env ?? []).filter((e) => "value" in e).map((e) => [e.name, e.value]),
);
try {
  const config = parseConfig(parse(cm.data["eproxy.yaml"]), env, "/etc/eproxy");
  const admin = config.admin?.port ? `, admin listener on ${config.admin.listenAddress}:${config.admin.port}` : "";
  const il = config.server.internalListener;
  const internal = il ? `, in-network listener on ${il.listenAddress}:${il.port}` : "";
  console.log(`chart-config: valid (state directory ${config.stateDir}${admin}${internal})`);
} catch (err) {
  console.log(`chart-config: ${err.message}`);
  process.exit(1);
}
