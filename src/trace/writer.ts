/**
 * The trace writer: events are queued in memory and written in batches off the request path. When
 * the store fails, batches go to an append-only spool file of framed records (bounded, fsync'd; see
 * `spool.ts`) and are replayed in order once the store answers again; events have ids, so a crash
 * between spooling and inserting does not duplicate them. While the spool is not empty, new batches
 * are spooled too (order). When the spool cannot be written either (disk full, read-only volume),
 * events are held in memory, bounded, until the spool or the store takes them: the writer never
 * throws and never crashes the process, it degrades readiness and counts.
 */
import { existsSync, statSync, truncateSync } from "node:fs";
import type { Logger } from "pino";
import { requestContext } from "../log.ts";
import { createTraceChain } from "./chain.ts";
import { appendRecords, frameRecord, readSpool } from "./spool.ts";
import { type TraceEvent, type TraceInput, type TraceStore, type Traces, toEvent } from "./traces.ts";

/** Options of the writer. */
export interface TraceWriterOptions {
  /** Spool file path. */
  spoolFile: string;
  /** Largest spool, in bytes; beyond it new events are dropped (and counted). */
  spoolMaxBytes: number;
  /** Events held in memory while neither the store nor the spool takes them; beyond, dropped. */
  maxHeldEvents?: number;
  /** Batch size and delay. */
  batchSize?: number;
  flushMs?: number;
  /** This writer's chain id (default: a fresh random one: one chain per process start). */
  writerId?: string;
  /** Fills fields from the client's configuration (certificate DN). */
  enrich?: (e: TraceEvent) => TraceEvent;
}

/** The writer's counters. */
export interface TraceWriterStats {
  /** Recorded, not yet handed to the store. */
  queued: number;
  /** Size of the spool file. */
  spooledBytes: number;
  /** Written to the store. */
  written: number;
  /** Lost: the spool was full, or the memory bound was reached while the spool failed. */
  dropped: number;
  /** Spool records skipped on replay because torn or corrupt. */
  corrupt: number;
  /** Held in memory because the spool could not be written. */
  held: number;
  /** Spool writes that failed (disk full, read-only, permissions). */
  spoolErrors: number;
  /** The last spool write failed. */
  spoolFailing: boolean;
}

/** The writer, also a Traces sink. */
export interface TraceWriter extends Traces {
  /** Writes what is queued (and retries the spool) now. */
  flush(): Promise<void>;
  /** Counters, for tests and metrics. */
  stats(): TraceWriterStats;
  close(): Promise<void>;
}

/** Creates the writer over a store. */
export function createTraceWriter(store: TraceStore, log: Logger, opts: TraceWriterOptions): TraceWriter {
  const batchSize = opts.batchSize ?? 200;
  const flushMs = opts.flushMs ?? 250;
  const maxHeld = opts.maxHeldEvents ?? 50_000;
  let queue: TraceEvent[] = [];
  // Taken from the queue, not yet in the store nor in the spool: after the spool's content in order.
  let held: TraceEvent[] = [];
  let written = 0;
  let dropped = 0;
  let corrupt = 0;
  let spoolErrors = 0;
  let spoolFailing = false;
  let running: Promise<void> | undefined;
  let closed = false;
  let storeDown = false;

  const spoolSize = (): number => {
    try {
      return existsSync(opts.spoolFile) ? statSync(opts.spoolFile).size : 0;
    } catch {
      return 0;
    }
  };

  /** Moves the held events to the spool; false (events still held) when the spool cannot be written. */
  function spoolHeld(): boolean {
    if (!held.length) return true;
    const text = Buffer.from(held.map(frameRecord).join(""));
    const size = spoolSize();
    if (size + text.length > opts.spoolMaxBytes) {
      dropped += held.length;
      log.error({ dropped: held.length, spoolBytes: size }, "trace spool full: events dropped");
      held = [];
      return true;
    }
    try {
      appendRecords(opts.spoolFile, text);
      held = [];
      if (spoolFailing) log.info({ spoolFile: opts.spoolFile }, "trace spool writable again");
      spoolFailing = false;
      return true;
    } catch (err) {
      spoolErrors++;
      if (!spoolFailing) {
        log.error(
          {
            err: (err as Error).message,
            code: (err as NodeJS.ErrnoException).code,
            spoolFile: opts.spoolFile,
          },
          "trace spool cannot be written: traces held in memory (bounded) until the store or the spool takes them",
        );
      }
      spoolFailing = true;
      if (held.length > maxHeld) {
        const over = held.length - maxHeld;
        // The newest are dropped, as with a full spool: what is held keeps its order.
        held.length = maxHeld;
        dropped += over;
        log.error({ dropped: over, held: maxHeld }, "trace memory bound reached: events dropped");
      }
      return false;
    }
  }

  /** Inserts what the spool holds, in order, then empties it; throws when the store fails. */
  async function replaySpool(): Promise<void> {
    if (spoolSize() === 0) return;
    let batch: TraceEvent[] = [];
    let replayed = 0;
    // Counted and logged once the replay went through: a replay interrupted by the store is retried.
    let badHere = 0;
    let firstBad: number | undefined;
    for (const item of readSpool(opts.spoolFile)) {
      if ("corruptAt" in item) {
        badHere++;
        firstBad ??= item.corruptAt;
        continue;
      }
      batch.push(item.event);
      if (batch.length === batchSize) {
        // In order; ids make a replay after a crash idempotent.
        await store.insertMany(batch);
        replayed += batch.length;
        batch = [];
      }
    }
    if (batch.length) await store.insertMany(batch);
    replayed += batch.length;
    if (badHere) {
      corrupt += badHere;
      log.error(
        { corrupt: badHere, firstOffset: firstBad, spoolFile: opts.spoolFile },
        "trace spool: torn or corrupt records skipped (a crash mid-write, or a damaged disk)",
      );
    }
    written += replayed;
    try {
      truncateSync(opts.spoolFile, 0);
    } catch (err) {
      // Stored already: replaying the same ids again later is idempotent.
      spoolErrors++;
      spoolFailing = true;
      log.error({ err: (err as Error).message }, "trace spool replayed but cannot be emptied");
      return;
    }
    log.info({ replayed }, "trace spool replayed");
  }

  async function drain(): Promise<void> {
    if (queue.length) {
      // Chained in recording order, before the first attempt: a spooled trace keeps its place.
      chain.seal(queue);
      held = held.length ? held.concat(queue) : queue;
      queue = [];
    }
    try {
      await replaySpool();
      while (held.length) {
        const part = held.slice(0, batchSize);
        await store.insertMany(part);
        held.splice(0, part.length);
        written += part.length;
      }
      if (storeDown) log.info("trace store available again");
      storeDown = false;
    } catch (err) {
      if (!storeDown) log.warn({ err: (err as Error).message }, "trace store unavailable: spooling");
      storeDown = true;
      // Whatever was not inserted goes to the spool, after what is already there.
      spoolHeld();
    }
  }

  function kick(): Promise<void> {
    running ??= drain()
      .catch((err: unknown) => {
        // Not expected (drain handles store and spool failures): logged, never an unhandled rejection.
        log.error({ err }, "trace writer: unexpected failure");
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  }

  const chain = createTraceChain(opts.writerId);
  log.info({ writerId: chain.writerId }, "trace chain started");
  store.bindWriter?.(() => flush());
  async function flush(): Promise<void> {
    await running;
    await kick();
  }

  const timer = setInterval(() => {
    if (queue.length || held.length || spoolSize() > 0) void kick();
  }, flushMs);
  timer.unref();

  return {
    record(input: TraceInput) {
      if (closed) return;
      let e = toEvent(input, Date.now(), requestContext.getStore());
      if (opts.enrich) e = opts.enrich(e);
      queue.push(e);
      if (queue.length >= batchSize) void kick();
    },
    flush,
    stats: () => ({
      queued: queue.length,
      spooledBytes: spoolSize(),
      written,
      dropped,
      corrupt,
      held: held.length,
      spoolErrors,
      spoolFailing,
    }),
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
      await kick();
      if (held.length) {
        log.error({ lost: held.length }, "trace writer closed with traces neither stored nor spooled");
      }
      // The chain's end, outside the trace store: a verifier can tell a deleted tail from a stop.
      log.info(chain.head(), "trace chain closed");
      await store.close();
    },
  };
}
