/**
 * Trace store without MongoDB: the latest events in memory (bounded, queryable) plus an append-only
 * JSON-lines file that keeps them all.
 */
import { appendFileSync } from "node:fs";
import type { TraceEvent, TraceQuery, TraceStore } from "../trace/traces.ts";

/** Creates the in-memory trace store; `file` (JSON lines) receives every event. */
export function createMemoryTraceStore(opts: {
  file?: string;
  maxEvents?: number;
  retentionMs: number;
}): TraceStore {
  const max = opts.maxEvents ?? 100_000;
  const events: TraceEvent[] = [];
  const ids = new Set<string>();
  return {
    async insertMany(batch) {
      const fresh = batch.filter((e) => !ids.has(e.id));
      if (opts.file && fresh.length)
        appendFileSync(opts.file, fresh.map((e) => `${JSON.stringify(e)}\n`).join(""), { mode: 0o600 });
      for (const e of fresh) {
        events.push(e);
        ids.add(e.id);
      }
      while (events.length > max) ids.delete((events.shift() as TraceEvent).id);
    },
    async query(q: TraceQuery) {
      const floor = Math.max(q.start, Date.now() - opts.retentionMs);
      return events
        .filter(
          (e) =>
            e.at >= floor &&
            e.at < q.end &&
            (!q.clientId || e.clientId === q.clientId) &&
            (!q.type || e.type === q.type) &&
            (!q.nationalId || e.nationalId === q.nationalId) &&
            (!q.after || e.at > q.after.at || (e.at === q.after.at && e.id > q.after.id)),
        )
        .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1))
        .slice(0, q.limit);
    },
    async ping() {},
    async close() {},
  };
}
