import { readFileSync } from "node:fs";
const prof = JSON.parse(readFileSync(process.argv[2], "utf8"));
const want = process.argv[3];
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map(); for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map(); let total = 0;
for (let i = 0; i < prof.samples.length; i++) { const n = byId.get(prof.samples[i]); if (n.callFrame.functionName === "(idle)") continue; self.set(n.id, (self.get(n.id) ?? 0) + (prof.timeDeltas[i] ?? 0)); total += prof.timeDeltas[i] ?? 0; }
const callers = new Map();
for (const [id, t] of self) { const n = byId.get(id); if (n.callFrame.functionName !== want) continue; const chain = []; let cur = parent.get(id); for (let k = 0; k < 4 && cur !== undefined; k++) { const p = byId.get(cur); chain.push(`${p.callFrame.functionName} ${p.callFrame.url.split("/").slice(-2).join("/")}:${p.callFrame.lineNumber}`); cur = parent.get(cur); } const key = chain.join(" < "); callers.set(key, (callers.get(key) ?? 0) + t); }
for (const [k, t] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log((100 * t / total).toFixed(2), k);
