/**
 * The trace writer: events are queued in memory and written in batches off the request path. When
 * the store fails, batches go to an append-only spool file (bounded, fsync'd) and are replayed in
 * order once the store answers again; events have ids, so a crash between spooling and inserting
 * does not duplicate them. While the spool is not empty, new batches are spooled too (order).
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  statSync,
  truncateSync,
  writeSync,
} from "node:fs";
import type { Logger } from "pino";
import { requestContext } from "../log.ts";
import { type TraceEvent, type TraceInput, type TraceStore, type Traces, toEvent } from "./traces.ts";

/** Options of the writer. */
export interface TraceWriterOptions {
  /** Spool file path. */
  spoolFile: string;
  /** Largest spool, in bytes; beyond it new events are dropped (and counted). */
  spoolMaxBytes: number;
  /** Batch size and delay. */
  batchSize?: number;
  flushMs?: number;
  /** Fills fields from the client's configuration (certificate DN). */
  enrich?: (e: TraceEvent) => TraceEvent;
}

/** The writer, also a Traces sink. */
export interface TraceWriter extends Traces {
  /** Writes what is queued (and retries the spool) now. */
  flush(): Promise<void>;
  /** Counters, for tests and metrics. */
  stats(): { queued: number; spooledBytes: number; written: number; dropped: number };
  close(): Promise<void>;
}

/** Creates the writer over a store. */
export function createTraceWriter(store: TraceStore, log: Logger, opts: TraceWriterOptions): TraceWriter {
  const batchSize = opts.batchSize ?? 200;
  const flushMs = opts.flushMs ?? 250;
  let queue: TraceEvent[] = [];
  let written = 0;
  let dropped = 0;
  let running: Promise<void> | undefined;
  let closed = false;
  let storeDown = false;

  const spoolSize = () => (existsSync(opts.spoolFile) ? statSync(opts.spoolFile).size : 0);

  function spool(events: readonly TraceEvent[]): void {
    const text = events.map((e) => `${JSON.stringify(e)}\n`).join("");
    if (spoolSize() + Buffer.byteLength(text) > opts.spoolMaxBytes) {
      dropped += events.length;
      log.error({ dropped: events.length }, "trace spool full: events dropped");
      return;
    }
    const fd = openSync(opts.spoolFile, "a", 0o600);
    try {
      writeSync(fd, text);
      // The spool is the durability guarantee while MongoDB is down.
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  async function replaySpool(): Promise<boolean> {
    if (spoolSize() === 0) return true;
    const lines = readFileSync(opts.spoolFile, "utf8").split("\n").filter(Boolean);
    const events = lines.map((l) => JSON.parse(l) as TraceEvent);
    for (let i = 0; i < events.length; i += batchSize) {
      // In order; ids make a replay after a crash idempotent.
      await store.insertMany(events.slice(i, i + batchSize));
    }
    truncateSync(opts.spoolFile, 0);
    written += events.length;
    log.info({ replayed: events.length }, "trace spool replayed");
    return true;
  }

  async function drain(): Promise<void> {
    const batch = queue;
    queue = [];
    try {
      if (spoolSize() > 0) await replaySpool();
      for (let i = 0; i < batch.length; i += batchSize) {
        await store.insertMany(batch.slice(i, i + batchSize));
        written += Math.min(batchSize, batch.length - i);
      }
      if (storeDown) log.info("trace store available again");
      storeDown = false;
    } catch (err) {
      if (!storeDown) log.warn({ err: (err as Error).message }, "trace store unavailable: spooling");
      storeDown = true;
      // Whatever was not inserted goes to the spool, after what is already there.
      if (batch.length) spool(batch);
    }
  }

  function kick(): Promise<void> {
    running ??= drain().finally(() => {
      running = undefined;
    });
    return running;
  }

  const timer = setInterval(() => {
    if (queue.length || spoolSize() > 0) kick();
  }, flushMs);
  timer.unref();

  return {
    record(input: TraceInput) {
      if (closed) return;
      const ctx = requestContext.getStore();
      let e = toEvent({
        ...(ctx?.requestId ? { requestId: ctx.requestId } : {}),
        ...(ctx?.callerIp ? { callerIp: ctx.callerIp } : {}),
        ...input,
      });
      if (opts.enrich) e = opts.enrich(e);
      queue.push(e);
      if (queue.length >= batchSize) kick();
    },
    async flush() {
      await running;
      await kick();
    },
    stats: () => ({ queued: queue.length, spooledBytes: spoolSize(), written, dropped }),
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
      await kick();
      await store.close();
    },
  };
}
