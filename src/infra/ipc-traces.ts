/**
 * One trace record for the workers of `server.workers` without MongoDB: the primary keeps the one
 * trace store (memory + JSON-lines file) and the workers reach it over node:cluster's IPC channel —
 * their writers insert into it, their `GET /traces` and `ListTraces` query it. Before answering a
 * query the primary asks every worker to flush its writer, so a query sees every trace recorded
 * before it, whichever worker recorded it. A worker whose insert is not answered (primary gone,
 * timeout) gets an error, and its writer spools as it does when MongoDB is down.
 */
import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import type { TraceEvent, TraceQuery, TraceStore } from "../trace/traces.ts";

/** Marks eProxy's trace messages among the others on the channel (prom-client's, node's). */
const TAG = "eproxyTraces";

type Request =
  | { [TAG]: 1; op: "insert"; id: number; events: TraceEvent[] }
  | { [TAG]: 1; op: "query"; id: number; q: TraceQuery };
type Reply = { [TAG]: 1; op: "reply"; id: number; ok: true; result?: unknown } | FailedReply;
type FailedReply = { [TAG]: 1; op: "reply"; id: number; ok: false; error: string };
type FlushAsk = { [TAG]: 1; op: "flush"; id: number };
type Flushed = { [TAG]: 1; op: "flushed"; id: number };

const isOurs = (m: unknown): m is { [TAG]: 1; op: string; id: number } =>
  typeof m === "object" && m !== null && (m as Record<string, unknown>)[TAG] === 1;

/** The side of the channel a worker holds (its `process`). */
export interface WorkerChannel {
  send?(message: unknown, callback?: (err: Error | null) => void): boolean;
  on(event: "message", listener: (m: unknown) => void): unknown;
  off(event: "message", listener: (m: unknown) => void): unknown;
}

/** Options of the worker side. */
export interface IpcTraceStoreOptions {
  /** Longest wait for the primary's answer to an insert (then the writer spools). */
  insertTimeoutMs?: number;
  /** Longest wait for a query's answer. */
  queryTimeoutMs?: number;
}

/**
 * The trace store of a worker: the primary's, over IPC. `bindWriter` lets the primary flush this
 * worker's writer before it answers a query.
 */
export function createIpcTraceStore(
  channel: WorkerChannel = process,
  opts: IpcTraceStoreOptions = {},
): TraceStore {
  const pending = new Map<
    number,
    { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }
  >();
  let next = 0;
  let flush: (() => Promise<void>) | undefined;

  const listener = (m: unknown) => {
    if (!isOurs(m)) return;
    if (m.op === "reply") {
      const r = m as Reply;
      const p = pending.get(r.id);
      if (!p) return;
      pending.delete(r.id);
      clearTimeout(p.timer);
      if (r.ok) p.resolve(r.result);
      else p.reject(new Error(`trace store (primary): ${r.error}`));
    } else if (m.op === "flush" && flush) {
      // Only the store a writer writes through answers (one a worker): the primary waits for it.
      const done = () => {
        try {
          channel.send?.({ [TAG]: 1, op: "flushed", id: m.id } satisfies Flushed);
        } catch {
          // The primary is gone: nobody waits for the answer.
        }
      };
      flush().then(done, done);
    }
  };
  channel.on("message", listener);

  function ask(message: Request, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!channel.send) {
        reject(new Error("no IPC channel to the primary"));
        return;
      }
      const timer = setTimeout(() => {
        pending.delete(message.id);
        reject(new Error(`trace store (primary) did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(message.id, { resolve, reject, timer });
      channel.send(message, (err) => {
        if (!err) return;
        pending.delete(message.id);
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  return {
    async insertMany(events) {
      if (!events.length) return;
      await ask({ [TAG]: 1, op: "insert", id: ++next, events: [...events] }, opts.insertTimeoutMs ?? 5_000);
    },
    async query(q) {
      return (await ask(
        { [TAG]: 1, op: "query", id: ++next, q },
        opts.queryTimeoutMs ?? 15_000,
      )) as TraceEvent[];
    },
    async ping() {},
    bindWriter(f) {
      flush = f;
    },
    async close() {
      channel.off("message", listener);
      for (const [id, p] of pending) {
        clearTimeout(p.timer);
        p.reject(new Error("trace store closed"));
        pending.delete(id);
      }
    },
  };
}

/** The side of the channel the primary holds. */
export interface PrimaryChannel {
  on(event: "message", listener: (worker: Worker, m: unknown) => void): unknown;
  /** The workers alive now. */
  workers(): Worker[];
}

/**
 * Serves `store` to the workers from the primary: inserts, and queries answered once every worker
 * flushed its writer (each bounded by `flushTimeoutMs`: a stuck worker delays a query, never blocks it).
 */
export function serveTracesToWorkers(
  store: TraceStore,
  log: Logger,
  opts: { flushTimeoutMs?: number; channel?: PrimaryChannel } = {},
): void {
  const channel: PrimaryChannel = opts.channel ?? {
    on: (event, listener) => cluster.on(event, listener),
    workers: () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w),
  };
  const flushTimeoutMs = opts.flushTimeoutMs ?? 2_000;
  let nextFlush = 0;
  const flushing = new Map<number, () => void>();

  function flushWorker(w: Worker): Promise<void> {
    return new Promise((resolve) => {
      const id = ++nextFlush;
      const done = () => {
        flushing.delete(id);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, flushTimeoutMs);
      flushing.set(id, done);
      try {
        w.send({ [TAG]: 1, op: "flush", id } satisfies FlushAsk, (err: Error | null) => {
          if (err) done();
        });
      } catch {
        done();
      }
    });
  }

  const reply = (w: Worker, id: number, work: Promise<unknown>) =>
    work.then(
      (result) => send(w, { [TAG]: 1, op: "reply", id, ok: true, result }),
      (err: unknown) => {
        log.error({ err }, "trace store (primary) failed a worker's request");
        send(w, { [TAG]: 1, op: "reply", id, ok: false, error: (err as Error).message });
      },
    );
  const send = (w: Worker, m: Reply) => {
    try {
      if (w.isConnected()) w.send(m);
    } catch {
      // The worker left; its own timeout answers its caller.
    }
  };

  channel.on("message", (w, m) => {
    if (!isOurs(m)) return;
    if (m.op === "flushed") {
      flushing.get(m.id)?.();
      return;
    }
    const r = m as Request;
    if (r.op === "insert") reply(w, r.id, store.insertMany(r.events));
    else if (r.op === "query") {
      reply(
        w,
        r.id,
        Promise.all(channel.workers().map(flushWorker)).then(() => store.query(r.q)),
      );
    }
  });
}
