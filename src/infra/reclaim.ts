/**
 * Bounded memory for large streamed bodies. Node allocates a fresh buffer for each read of a TLS
 * socket (16–64 KiB) and V8 frees it only when a garbage collection finds its JS object dead. A
 * relayed MTOM upload allocates ~1 KiB of heap per 64 KiB read, so once the young generation has
 * grown under load (up to 64 MiB semi-spaces) no young-generation collection comes during an
 * upload, and V8's external-memory trigger waits for ~64 MB more: a 100 MiB upload grew the process
 * by ~100 MiB (`process.memoryUsage().arrayBuffers` +100 MB in 0.4 s, back after the next
 * collection). After every `everyBytes` relayed, this asks V8 for a young-generation collection
 * (a scavenge, run as a task right after; ~1 ms when little survives), which frees the read buffers
 * of the bytes already relayed. Measured with bench:compare (100 MiB MTOM, after the 2 KB load):
 * first-upload growth 38 MiB without, 28 MiB every 16 MiB, 5–7 MiB every 4 MiB (the default).
 *
 * The collector is V8's `gc` extension, enabled at start by setting `--expose-gc` as a V8 flag and
 * read from a fresh context (no command-line flag needed).
 *
 * Only large bodies count: the first `UNCOUNTED_BODY_BYTES` of each body (each way) do not. Small
 * calls allocate heap as they go, so V8's own young-generation collections free their buffers; when
 * they counted, 2 KB calls at 3,700/s asked for ~5 extra collections a second, and those that fell
 * while V8 was starting a marking (the performance entry saying so comes one or two event-loop turns
 * late) became full collections finished at once: 14–20 ms pauses, 1–2 per 8 s run.
 *
 * Never while V8 is marking the old generation incrementally: a young-generation collection asked
 * for then, with the allocation limit overshot, makes V8 finish the full collection at once
 * ("testing; Incremental marking forced finalization" in --trace-gc): the marking left to do moved
 * into the pause, 21–26 ms pauses instead of 5–12 (measured at 4,000 calls/s). The start and the
 * end of that marking come from the `gc` performance entries (kind incremental, then major); the
 * collection asked for meanwhile waits for the next relayed chunk after the end, or until twice
 * `everyBytes` were relayed (then it is asked anyway: the memory bound of large uploads first).
 */
import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

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
 * first `UNCOUNTED_BODY_BYTES` counts. `probe` replaces V8 in tests: the collector and the marking
 * state.
 */
export function createReclaimer(
  everyBytes: number,
  probe?: { collect: NodeJS.GCFunction; marking: () => boolean },
): ((bytes: number, bodyBytes: number) => void) | undefined {
  if (!(everyBytes > 0)) return undefined;
  let gc = probe?.collect ?? (globalThis as { gc?: NodeJS.GCFunction }).gc;
  if (typeof gc !== "function") {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as NodeJS.GCFunction | undefined;
  }
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
