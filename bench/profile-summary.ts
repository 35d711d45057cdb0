/**
 * `node bench/profile-summary.ts FILE.cpuprofile [top]`: what a V8 CPU profile (from
 * `BENCH_CPU_PROF=DIR npm run bench:compare`) spends its busy time on, by area (pino, undici,
 * TLS, GC, streams, eProxy's own code, ...) and by function, self time, as a flame graph's bottom
 * row would show it. Idle time is left out of the percentages.
 */
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
const file = process.argv[2];
if (!file) throw new Error("usage: profile-summary FILE.cpuprofile [top]");
const top = Number(process.argv[3] ?? 25);
const prof = JSON.parse(readFileSync(file, "utf8")) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map<number, number>();
prof.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
});

function area(n: Node): string {
  const { functionName: f, url } = n.callFrame;
  if (f === "(idle)") return "idle";
  if (f === "(garbage collector)") return "GC";
  if (f === "(program)") return "V8/native (program)";
  if (/node_modules\/(pino|sonic-boom|fast-redact|@pinojs|thread-stream)/.test(url)) return "logging (pino)";
  if (/node_modules\/undici/.test(url)) return "undici";
  if (/node_modules\/@connectrpc/.test(url)) return "connect";
  if (/node_modules\/ioredis/.test(url)) return "ioredis";
  if (/node:(internal\/)?(tls|_tls|crypto)|internal\/tls/.test(url)) return "TLS";
  if (/node:(internal\/)?(http2|_http|http)|internal\/http/.test(url)) return "node http/http2";
  if (/node:(internal\/)?(stream|streams)|internal\/streams/.test(url)) return "node streams";
  if (/node:(internal\/)?(net|dns)|internal\/net/.test(url)) return "node net";
  if (/\/src\/log\.ts/.test(url)) return "eProxy log.ts";
  if (/\/src\//.test(url)) return "eProxy src";
  if (url.startsWith("node:")) return "node (other)";
  if (url === "") return "native/builtin";
  return "other";
}

// Attribute native frames (empty url) to the nearest JS ancestor's area.
function areaOf(id: number): string {
  let n = byId.get(id);
  const own = n ? area(n) : "other";
  if (own !== "native/builtin") return own;
  while (n && parent.has(n.id)) {
    n = byId.get(parent.get(n.id) as number);
    if (n) {
      const a = area(n);
      if (a !== "native/builtin") return `${a} (native)`;
    }
  }
  return own;
}

const areas = new Map<string, number>();
const fns = new Map<string, number>();
let busy = 0;
for (const [id, us] of self) {
  const n = byId.get(id) as Node;
  const a = areaOf(id);
  if (a === "idle") continue;
  busy += us;
  areas.set(a, (areas.get(a) ?? 0) + us);
  const key = `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/src\//, "src/")}:${n.callFrame.lineNumber + 1}`;
  fns.set(key, (fns.get(key) ?? 0) + us);
}
const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)} %`;
process.stdout.write(`busy ${(busy / 1000).toFixed(0)} ms\n\nby area (self time):\n`);
for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1])) process.stdout.write(`  ${pct(us)}  ${a}\n`);
process.stdout.write(`\ntop ${top} functions (self time):\n`);
for (const [f, us] of [...fns].sort((x, y) => y[1] - x[1]).slice(0, top))
  process.stdout.write(`  ${pct(us)}  ${f}\n`);
