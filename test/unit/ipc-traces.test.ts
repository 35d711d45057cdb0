/**
 * The workers' trace store over IPC, with an in-process channel standing for node:cluster's: a
 * query from one worker sees what every worker's writer still queued (the primary flushes them
 * first); an insert the primary does not answer fails, and the writer spools it.
 */

import type { Worker } from "node:cluster";
import { EventEmitter } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createIpcTraceStore, serveTracesToWorkers, type WorkerChannel } from "../../src/infra/ipc-traces.ts";
import { createMemoryTraceStore } from "../../src/infra/memory-traces.ts";
import { createTraceWriter } from "../../src/trace/writer.ts";

const DAY = 86_400_000;
const silent = pino({ level: "silent" });

/** A primary and `n` workers joined by asynchronous message passing (as IPC is). */
function cluster(n: number) {
  const primary = new EventEmitter();
  const workers = Array.from({ length: n }, () => {
    const side = new EventEmitter();
    const worker = {
      isConnected: () => true,
      send: (m: unknown, cb?: (err: Error | null) => void) => {
        setImmediate(() => side.emit("message", structuredClone(m)));
        cb?.(null);
        return true;
      },
    } as unknown as Worker;
    const channel: WorkerChannel = {
      send: (m, cb) => {
        setImmediate(() => primary.emit("message", worker, structuredClone(m)));
        cb?.(null);
        return true;
      },
      on: (e, l) => side.on(e, l),
      off: (e, l) => side.off(e, l),
    };
    return { worker, channel };
  });
  const store = createMemoryTraceStore({ retentionMs: DAY });
  serveTracesToWorkers(store, silent, {
    channel: { on: (e, l) => primary.on(e, l), workers: () => workers.map((w) => w.worker) },
  });
  return { store, workers };
}

/** A worker's writer and the store it writes and queries through (one, as in createDeps). */
function workerOn(channel: WorkerChannel) {
  const store = createIpcTraceStore(channel, { insertTimeoutMs: 200 });
  const writer = createTraceWriter(store, silent, {
    spoolFile: path.join(mkdtempSync(path.join(tmpdir(), "eproxy-ipc-")), "spool"),
    spoolMaxBytes: 1024 * 1024,
    flushMs: 60_000,
  });
  return { store, writer };
}

describe("traces over IPC", () => {
  it("a query on one worker sees the traces every worker still queued", async () => {
    const { workers } = cluster(2);
    const [a, b] = workers.map((w) => workerOn(w.channel));
    if (!a || !b) throw new Error("two workers");
    for (let i = 0; i < 3; i++) a.writer.record({ type: "SEND", clientId: "c", outcome: `a${i}` });
    for (let i = 0; i < 2; i++) b.writer.record({ type: "SEND", clientId: "c", outcome: `b${i}` });
    // Nothing flushed yet (flushMs is a minute): the primary has each writer write first.
    const seen = await b.store.query({ start: 0, end: Date.now() + DAY, clientId: "c", limit: 100 });
    expect(seen.map((e) => e.outcome).sort()).toEqual(["a0", "a1", "a2", "b0", "b1"]);
    expect(new Set(seen.map((e) => e.writerId)).size).toBe(2);
    await a.writer.close();
    await b.writer.close();
  });

  it("an insert the primary does not answer fails, and the writer spools it", async () => {
    const silentChannel: WorkerChannel = { send: () => true, on: () => undefined, off: () => undefined };
    const { writer } = workerOn(silentChannel);
    writer.record({ type: "SEND", clientId: "c" });
    await writer.flush();
    expect(writer.stats().spooledBytes).toBeGreaterThan(0);
    await writer.close();
  });
});
