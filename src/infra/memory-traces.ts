/**
 * Trace store without MongoDB: the latest events in memory (bounded by bytes, queryable) plus an
 * append-only JSON-lines file that keeps them all.
 */
import { appendFileSync } from "node:fs";
import type { TraceEvent, TraceQuery, TraceStore } from "../trace/traces.ts";

/** Default memory bound: ~8,000 relayed calls' events, in one buffer outside the V8 heap. */
export const DEFAULT_TRACE_MEMORY_BYTES = 16 * 1024 * 1024;

/**
 * Creates the in-memory trace store; `file` (JSON lines) receives every event. The memory part keeps
 * the latest events within `maxBytes` (their UTF-8 JSON) and `maxEvents`.
 *
 * The events are kept as UTF-8 JSON in one ring buffer outside the V8 heap, with their offsets,
 * lengths and times in typed arrays. Kept as JS strings (the previous shape), every event outlived a
 * young-generation collection, was promoted, and was later old-generation garbage: at thousands of
 * calls per second the ring rotated megabytes per second through the old generation, the main cause
 * of full collections during a steady relay load. Only the ids stay JS strings (the store ignores
 * ids it holds: the spool's replays are idempotent). Queries (rare) parse what they scan.
 */
export function createMemoryTraceStore(opts: {
  file?: string;
  maxEvents?: number;
  maxBytes?: number;
  retentionMs: number;
}): TraceStore {
  const maxEvents = opts.maxEvents ?? 100_000;
  const capacity = opts.maxBytes ?? DEFAULT_TRACE_MEMORY_BYTES;
  // Allocated at the first event; not zero-filled: pages become resident as the ring fills them.
  let ring: Buffer | undefined;
  // Records ring: slot `first` is the oldest, `count` records, in writing order.
  const off = new Uint32Array(maxEvents);
  const len = new Uint32Array(maxEvents);
  const at = new Float64Array(maxEvents);
  const idOf: Array<string | undefined> = new Array(maxEvents).fill(undefined);
  let first = 0;
  let count = 0;
  // Where the next record is written.
  let tail = 0;
  const ids = new Set<string>();

  const dropOldest = () => {
    ids.delete(idOf[first] as string);
    idOf[first] = undefined;
    first = (first + 1) % maxEvents;
    count--;
  };
  /** Room for `n` bytes after the newest record, evicting the oldest ones it overwrites. */
  const reserve = (n: number): number => {
    if (tail + n > capacity) {
      // Wrap: what is left of the previous lap past `tail` is the oldest, then what [0, n) holds.
      while (count > 0 && (off[first] as number) >= tail) dropOldest();
      tail = 0;
    }
    while (count > 0 && (off[first] as number) >= tail && (off[first] as number) < tail + n) dropOldest();
    const at0 = tail;
    tail += n;
    return at0;
  };

  return {
    async insertMany(batch) {
      const fresh = batch.filter((e) => !ids.has(e.id));
      if (fresh.length === 0) return;
      // Flat strings (no `\n` appended to each): measured and copied without flattening first.
      const jsons = fresh.map((e) => JSON.stringify(e));
      if (opts.file) appendFileSync(opts.file, `${jsons.join("\n")}\n`, { mode: 0o600 });
      ring ??= Buffer.allocUnsafeSlow(capacity);
      for (let i = 0; i < fresh.length; i++) {
        const e = fresh[i] as TraceEvent;
        const json = jsons[i] as string;
        const n = Buffer.byteLength(json) + 1;
        if (n > capacity) continue; // larger than the whole bound: only in the file
        if (count === maxEvents) dropOldest();
        const o = reserve(n);
        ring.write(json, o, "utf8");
        ring[o + n - 1] = 0x0a;
        const slot = (first + count) % maxEvents;
        off[slot] = o;
        len[slot] = n;
        at[slot] = e.at;
        idOf[slot] = e.id;
        count++;
        ids.add(e.id);
      }
    },
    async query(q: TraceQuery) {
      const floor = Math.max(q.start, Date.now() - opts.retentionMs);
      const out: TraceEvent[] = [];
      for (let k = 0; k < count; k++) {
        const slot = (first + k) % maxEvents;
        const t = at[slot] as number;
        if (t < floor || t >= q.end) continue;
        const o = off[slot] as number;
        const e = JSON.parse((ring as Buffer).toString("utf8", o, o + (len[slot] as number))) as TraceEvent;
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
