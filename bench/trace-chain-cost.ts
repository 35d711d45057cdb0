/**
 * `npm run bench:trace-chain`: what the tamper-evident chain costs. CPU: the writer seals each trace
 * in its batch (one canonical JSON array and one SHA-256), measured per trace on SEND traces as the
 * relay records them, and compared with the relay's CPU per call (`RELAY_CPU_MS`, default 0.11 ms:
 * bench:compare's figure for a 2 KB call). Storage: the BSON size of a trace document in MongoDB
 * with and without the chain fields, and the `chain` index's key.
 */
import { BSON } from "mongodb";
import { createTraceChain } from "../src/trace/chain.ts";
import { type TraceEvent, toEvent } from "../src/trace/traces.ts";

const N = Number(process.env.CHAIN_TRACES ?? 200_000);
const RELAY_CPU_MS = Number(process.env.RELAY_CPU_MS ?? 0.11);

function sendTrace(i: number): TraceEvent {
  return toEvent({
    type: "SEND",
    clientId: "lps-demo",
    nationalId: "899700218896",
    callerIp: "10.12.4.31",
    sessionId: `session-${i % 50}`,
    certificateDn: "CN=lps-demo, OU=ORG AUTH_CLI, O=Hôpital Exemple, C=FR",
    correlationId: "a3f5c2d0-0000-4000-8000-000000000001",
    requestId: `1f0c2b9e-6a43-4a1d-9d2c-${String(i).padStart(12, "0")}`,
    service: "insi",
    method: "POST",
    path: "/rechercherInsAvecTraitsIdentite",
    soapAction: "urn:ServiceIdentiteCertifiee:1.0:rechercherInsAvecTraitsIdentite",
    upstreamStatus: 200,
    durationMs: 41,
    bytesIn: 1315,
    bytesOut: 725,
    outcome: "OK",
  });
}

function measure(): number {
  const events = Array.from({ length: N }, (_, i) => sendTrace(i));
  const chain = createTraceChain();
  // Batches of 200, as the writer drains them.
  const t0 = process.cpuUsage();
  for (let i = 0; i < events.length; i += 200) chain.seal(events.slice(i, i + 200));
  const used = process.cpuUsage(t0);
  return (used.user + used.system) / N;
}

measure(); // warm-up: JIT, the session-hash memo
const runs = [measure(), measure(), measure()].sort((a, b) => a - b);
const perTrace = runs[1] as number;

const sealed = sendTrace(1);
createTraceChain().seal([sealed]);
const doc = (e: TraceEvent) => {
  const { id, at, ...rest } = e;
  return { _id: id, at: new Date(at), ...rest };
};
const { writerId, seq, prevHash, hash, ...unchained } = sealed;
const withChain = BSON.calculateObjectSize(doc(sealed));
const without = BSON.calculateObjectSize(doc(unchained as TraceEvent));
const indexKey = BSON.calculateObjectSize({ writerId, seq });

process.stdout.write(
  `${[
    `trace chain cost, ${N} SEND traces sealed in batches of 200 (median of 3 runs)`,
    `  CPU: ${perTrace.toFixed(2)} µs a trace = ${((perTrace / 1000 / RELAY_CPU_MS) * 100).toFixed(1)} % of a relayed call's ${RELAY_CPU_MS} ms (off the request path, in the writer's batch)`,
    `  MongoDB document (BSON): ${without} -> ${withChain} bytes a SEND trace (+${withChain - without}, +${(((withChain - without) / without) * 100).toFixed(0)} %)`,
    `  chain index key (writerId, seq): ${indexKey} bytes of BSON a trace before the storage engine's prefix compression`,
    `  (seq ${seq}, prevHash "${prevHash}", hash ${hash})`,
  ].join("\n")}\n`,
);
