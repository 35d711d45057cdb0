/**
 * Trace store without MongoDB: the latest events in memory (bounded by bytes, queryable) plus an
 * append-only JSON-lines file that keeps them all.
 */
import { appendFileSync } from "node:fs";
import type { TraceEvent, TraceQuery, TraceStore } from "../trace/traces.ts";

/** Default memory bound: ~8,000 relayed calls' events, a flat heap instead of one that grows per call. */
export const DEFAULT_TRACE_MEMORY_BYTES = 16 * 1024 * 1024;

/**
 * Creates the in-memory trace store; `file` (JSON lines) receives every event. The memory part keeps
 * the latest events within `maxBytes` (counted as their JSON size, ~2 KB per relayed call in the V8
 * heap) and `maxEvents`: an unbounded buffer grew the live heap per call and made every full
 * collection longer (tail-latency bursts).
 */
export function createMemoryTraceStore(opts: {
  file?: string;
  maxEvents?: number;
  maxBytes?: number;
  retentionMs: number;
}): TraceStore {
  const maxEvents = opts.maxEvents ?? 100_000;
  const maxBytes = opts.maxBytes ?? DEFAULT_TRACE_MEMORY_BYTES;
  // A queue as an array with a moving head: dropping the oldest is O(1), compaction is amortised.
  // Each event is kept as its JSON line (one flat string instead of a graph of ~20 objects): at
  // thousands of calls per second every event outlives a young-generation collection, so what it is
  // made of is what each scavenge copies and promotes. Queries (rare) parse what they scan.
  let events: Array<{ line: string; id: string; at: number } | undefined> = [];
  let head = 0;
  let bytes = 0;
  const ids = new Set<string>();
  return {
    async insertMany(batch) {
      const fresh = batch.filter((e) => !ids.has(e.id));
      if (fresh.length === 0) return;
      const lines = fresh.map((e) => `${JSON.stringify(e)}\n`);
      if (opts.file) appendFileSync(opts.file, lines.join(""), { mode: 0o600 });
      fresh.forEach((e, i) => {
        const line = lines[i] as string;
        events.push({ line, id: e.id, at: e.at });
        bytes += line.length;
        ids.add(e.id);
      });
      while (events.length - head > maxEvents || (bytes > maxBytes && events.length - head > 1)) {
        const old = events[head] as { line: string; id: string };
        events[head] = undefined;
        head++;
        bytes -= old.line.length;
        ids.delete(old.id);
      }
      if (head > 1024 && head > events.length / 2) {
        events = events.slice(head);
        head = 0;
      }
    },
    async query(q: TraceQuery) {
      const floor = Math.max(q.start, Date.now() - opts.retentionMs);
      const out: TraceEvent[] = [];
      for (let i = head; i < events.length; i++) {
        const kept = events[i] as { line: string; at: number };
        if (kept.at < floor || kept.at >= q.end) continue;
        const e = JSON.parse(kept.line) as TraceEvent;
        if (
          e.at >= floor &&
          e.at < q.end &&
          (!q.clientId || e.clientId === q.clientId) &&
          (!q.type || e.type === q.type) &&
          (!q.nationalId || e.nationalId === q.nationalId) &&
          (!q.after || e.at > q.after.at || (e.at === q.after.at && e.id > q.after.id))
        )
          out.push(e);
      }
      return out.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1)).slice(0, q.limit);
    },
    async ping() {},
    async close() {},
  };
}
