// Validates the ServiceMonitor objects of rendered manifests (stdin) against the prometheus-operator
// schema compiled in @kubernetes-models/prometheus-operator; kubeconform has no schema for this CRD
// here. Exits 1 on an invalid object, and when none was found (the render must contain one).
// Usage: helm template ... | EPROXY_DEPLOY_TOOLS=<npm prefix> node .ci/validate-servicemonitor.mjs
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseAllDocuments } from "yaml";

const pkg = path.join(process.env.EPROXY_DEPLOY_TOOLS ?? ".", "node_modules/@kubernetes-models/prometheus-operator");
const { ServiceMonitor } = await import(pathToFileURL(path.join(pkg, "monitoring.coreos.com/v1/ServiceMonitor.js")).href);

let input = "";
for await (const chunk of process.stdin) input += chunk;
let found = 0;
let bad = 0;
for (const doc of parseAllDocuments(input)) {
  const o = doc.toJS();
  if (o?.kind !== "ServiceMonitor") continue;
  found++;
  try {
    new ServiceMonitor(o).validate();
    console.log(`ServiceMonitor ${o.metadata?.name}: valid`);
  } catch (err) {
    bad++;
    console.log(`ServiceMonitor ${o.metadata?.name}: ${err.message}`);
  }
}
if (found === 0) console.log("no ServiceMonitor in the input");
process.exit(found === 0 || bad > 0 ? 1 : 0);
