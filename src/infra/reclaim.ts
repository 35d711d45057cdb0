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
 * read from a fresh context (no command-line flag needed). 2 KB SOAP calls add to the count too:
 * one extra scavenge per 4 MiB relayed (~5 per second at 3,000 calls/s) costs
 * ~1 ms each now that little survives them.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** Counts relayed bytes and asks for a young-generation collection every `everyBytes` (0: never). */
export function createReclaimer(everyBytes: number): ((bytes: number) => void) | undefined {
  if (!(everyBytes > 0)) return undefined;
  let gc = (globalThis as { gc?: NodeJS.GCFunction }).gc;
  if (typeof gc !== "function") {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as NodeJS.GCFunction | undefined;
  }
  if (typeof gc !== "function") return undefined;
  const collect = gc;
  let pending = 0;
  let running = false;
  return (bytes) => {
    pending += bytes;
    if (pending < everyBytes || running) return;
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
