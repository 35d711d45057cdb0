/**
 * The rig's simulator host: the PSC simulator (CIBA, tokens, introspection) and the teleservice
 * simulators (token exchange, INSi) in one process, listening on this network namespace's address
 * with the rig's server certificate. Started by rig.ts as `ip netns exec rig-sims node test/rig/sims.ts`.
 * Their counters are read over HTTPS (`/control/stats` of each).
 *
 *   node test/rig/sims.ts <ip> <pki dir> <psc port> <teleservice port> <clients (comma separated)>
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { startPscSimulator } from "../../src/sandbox/psc-simulator.ts";
import { startTeleserviceSimulator } from "../../src/sandbox/teleservices.ts";

const [ip = "127.0.0.1", pkiDir = ".", pscPort = "9443", telePort = "9444", clients = "lps-demo"] =
  process.argv.slice(2);
const tls = {
  cert: readFileSync(path.join(pkiDir, "rig-server.pem"), "utf8"),
  key: readFileSync(path.join(pkiDir, "rig-server.key"), "utf8"),
  ca: readFileSync(path.join(pkiDir, "ca.pem"), "utf8"),
};
const AS_SECRET = "rig-only-introspection-secret";
const psc = await startPscSimulator({
  port: Number(pscPort),
  host: ip,
  listenAddress: ip,
  tls,
  clients: clients.split(",").map((id) => ({ id, redirectUris: [`https://${ip}/cb`] })),
  autoApproveMs: Number(process.env.RIG_APPROVE_MS ?? 1_500),
  cibaIntervalSeconds: 1,
  cibaTtlSeconds: 60,
  introspectionClients: [{ id: "rig-teleservice-as", secret: AS_SECRET }],
});
const tele = await startTeleserviceSimulator({
  port: Number(telePort),
  host: ip,
  listenAddress: ip,
  tls,
  psc: {
    introspectionEndpoint: `${psc.issuer}/protocol/openid-connect/token/introspect`,
    clientId: "rig-teleservice-as",
    clientSecret: AS_SECRET,
    ca: tls.ca,
  },
});
process.stdout.write(
  `${JSON.stringify({ discoveryUrl: psc.discoveryUrl, issuer: psc.issuer, tele: tele.url, tokenEndpoint: tele.tokenEndpoint })}\n`,
);
const stop = async () => {
  await psc.close();
  await tele.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
