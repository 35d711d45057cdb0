/**
 * Bounded memory for large streamed bodies, when Node runs with `--expose-gc` (on its command line
 * or in `NODE_OPTIONS`; off otherwise: eProxy sets no V8 flag at run time). Node allocates a fresh
 * buffer for each read of a TLS socket and V8 frees it only when a collection finds its JS object
 * dead; a streamed MTOM upload allocates little heap per read, so no young-generation collection
 * comes during it and the process grows by up to the upload's size until V8's external-memory
 * trigger. After every `everyBytes` relayed past each body's first `UNCOUNTED_BODY_BYTES`, this asks
 * V8 for an asynchronous young-generation collection, never while V8 marks the old generation
 * incrementally (that would finish the marking in the pause) unless twice `everyBytes` are waiting.
 * What it pays (RSS growth of a 100 MiB upload) and why each rule: bench/reports/reclaim.md.
 */
import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";

/** Bytes at the start of each relayed body that do not count (small calls never do). */
export const UNCOUNTED_BODY_BYTES = 256 * 1024;

/** A marking older than this is taken as over (a missed entry must not stop the reclaimer for good). */
const MARKING_AT_MOST_MS = 1000;

/** Whether V8 is marking the old generation incrementally, from the `gc` performance entries. */
function watchMarking(): () => boolean {
  let since = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) since = performance.now();
      else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) since = 0;
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return () => since !== 0 && performance.now() - since < MARKING_AT_MOST_MS;
}

/**
 * Counts relayed bytes and asks for a young-generation collection every `everyBytes` (0: never).
 * Each call tells one chunk: its size and its body's size so far; only what lies past the body's
 * first `UNCOUNTED_BODY_BYTES` counts. Undefined (nothing to tell) when Node does not expose `gc`.
 * `probe` replaces V8 in tests: the collector and the marking state.
 */
export function createReclaimer(
  everyBytes: number,
  probe?: { collect: NodeJS.GCFunction; marking: () => boolean },
): ((bytes: number, bodyBytes: number) => void) | undefined {
  if (!(everyBytes > 0)) return undefined;
  const gc = probe?.collect ?? (globalThis as { gc?: NodeJS.GCFunction }).gc;
  if (typeof gc !== "function") return undefined;
  const collect = gc;
  const marking = probe?.marking ?? watchMarking();
  let pending = 0;
  let running = false;
  return (bytes, bodyBytes) => {
    if (bodyBytes <= UNCOUNTED_BODY_BYTES) return;
    pending += Math.min(bytes, bodyBytes - UNCOUNTED_BODY_BYTES);
    if (pending < everyBytes || running) return;
    // While V8 marks, wait — up to twice the amount (a large upload keeps its bound: at the
    // 100–400 MB/s of an upload, 4 MiB more take 10–40 ms).
    if (pending < 2 * everyBytes && marking()) return;
    pending = 0;
    running = true;
    collect({ type: "minor", execution: "async" }).then(
      () => {
        running = false;
      },
      () => {
        running = false;
      },
    );
  };
}
