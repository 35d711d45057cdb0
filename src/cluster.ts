/**
 * `server.workers`: eProxy on every core with node:cluster. The primary only supervises: it forks
 * the workers, restarts one that dies (giving up on a crash loop), and on SIGTERM/SIGINT forwards
 * SIGTERM to each, so that each drains its own connections within `server.shutdownGraceMs`, then
 * exits. The workers share the listener (the primary hands new connections out round-robin; a
 * keep-alive connection stays with its worker).
 *
 * Workers are replicas in one host: sessions, CIBA requests, leases and misuse counters live in the
 * session store, exactly as for replicas on several hosts. The memory store is per process, so with
 * it eProxy runs one process and says so (the sandbox and a default configuration keep working with
 * one command). Each worker writes its own trace spool (`<spoolFile>.worker-<n>`). Without MongoDB
 * the primary keeps the one trace store (memory and the JSON-lines file) and the workers write to
 * it and query it over the IPC channel (`infra/ipc-traces.ts`): `GET /traces` sees every worker's
 * traces.
 *
 * Metrics: each worker has its own registry. An admin listener that aggregates belongs in the
 * primary, with prom-client's `AggregatorRegistry.clusterMetrics()` (workers answer it over the
 * cluster IPC channel once prom-client is loaded in them); workers then start no admin listener.
 */
import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { childLogger } from "./log.ts";
import type { TraceStore } from "./trace/traces.ts";

/** Environment variable carrying a worker's stable index (0..workers-1) from the primary. */
const WORKER_INDEX = "EPROXY_WORKER_INDEX";
/** Set by the primary when it keeps the trace store for its workers (no MongoDB). */
const TRACE_HUB = "EPROXY_TRACE_HUB";

/** What the primary hands a worker instead of building it from the configuration. */
export interface WorkerOverrides {
  /** The primary's trace store, over IPC. */
  traceStore?: TraceStore;
}

/** How many processes serve: `server.workers`, default the number of CPUs, 1 with the memory store. */
export function workersFor(config: Readonly<Config>, log: Logger): number {
  const configured = config.server.workers;
  const wanted = configured ?? availableParallelism();
  if (wanted > 1 && config.stores.sessions.kind === "memory") {
    // Said loudly only when asked for explicitly; the default quietly fits the store.
    if (configured !== undefined) {
      log.warn(
        { workers: configured },
        "server.workers > 1 needs a shared session store (stores.sessions.kind: redis): the memory store is per process, running one process",
      );
    }
    return 1;
  }
  return wanted;
}

/** This worker's configuration: its own trace spool, so that workers never replay each other's. */
export function workerConfig(config: Readonly<Config>, index: number): Readonly<Config> {
  return Object.freeze({
    ...config,
    traces: Object.freeze({ ...config.traces, spoolFile: `${config.traces.spoolFile}.worker-${index}` }),
  });
}

/**
 * Runs `start` in this process (one process, or a forked worker), or supervises `workers` forked
 * processes that each run it. `env` is the environment the configuration was read from.
 */
export async function serveWithWorkers(
  config: Readonly<Config>,
  env: Readonly<Record<string, string | undefined>>,
  log: Logger,
  start: (config: Readonly<Config>, log: Logger, overrides?: WorkerOverrides) => Promise<void>,
): Promise<void> {
  if (cluster.isWorker) {
    const index = Number(env[WORKER_INDEX] ?? cluster.worker?.id ?? 0);
    const overrides: WorkerOverrides = {};
    if (env[TRACE_HUB] === "1") {
      const { createIpcTraceStore } = await import("./infra/ipc-traces.ts");
      overrides.traceStore = createIpcTraceStore();
    }
    await start(workerConfig(config, index), childLogger(log, { worker: index }), overrides);
    return;
  }
  const workers = workersFor(config, log);
  if (workers <= 1) {
    await start(config, log);
    return;
  }
  // Without MongoDB, one trace store for every worker, in the primary (one record per deployment).
  const hub = !config.stores.mongodbUrl;
  if (hub) await serveTraceHub(config, log);
  superviseWorkers(workers, config, log, hub ? { [TRACE_HUB]: "1" } : {});
  // One /metrics for every worker: the primary aggregates their registries over the IPC channel.
  if (config.admin.port !== undefined) {
    const { startClusterAdmin } = await import("./admin-server.ts");
    await startClusterAdmin(config, log);
  }
}

/** The primary's trace store (memory and the JSON-lines file), served to the workers over IPC. */
async function serveTraceHub(config: Readonly<Config>, log: Logger): Promise<void> {
  const { mkdirSync } = await import("node:fs");
  const path = await import("node:path");
  const { createMemoryTraceStore } = await import("./infra/memory-traces.ts");
  const { serveTracesToWorkers } = await import("./infra/ipc-traces.ts");
  mkdirSync(path.dirname(config.traces.file), { recursive: true });
  const store = createMemoryTraceStore({
    file: config.traces.file,
    retentionMs: config.traces.retentionDays * 86_400_000,
  });
  serveTracesToWorkers(store, log);
  log.info(
    { file: config.traces.file },
    "no MongoDB: the primary keeps every worker's traces (memory and a JSON-lines file)",
  );
}

function superviseWorkers(
  workers: number,
  config: Readonly<Config>,
  log: Logger,
  env: Record<string, string>,
): void {
  const indexOf = new Map<Worker, number>();
  const startedAt = new Map<number, number>();
  let stopping = false;
  let failed = false;
  let fastFailures = 0;

  const fork = (i: number) => {
    const w = cluster.fork({ ...env, [WORKER_INDEX]: String(i) });
    indexOf.set(w, i);
    startedAt.set(i, Date.now());
  };
  const alive = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);

  const stop = (signal: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    if (code) failed = true;
    process.stderr.write(`${signal} received: draining ${alive().length} workers\n`);
    for (const w of alive()) w.process.kill("SIGTERM");
    if (alive().length === 0) process.exit(code);
    // Each worker bounds its own drain; this bounds a worker that hangs anyway.
    setTimeout(() => {
      for (const w of alive()) w.process.kill("SIGKILL");
      process.exit(1);
    }, config.server.shutdownGraceMs + 5_000).unref();
  };

  cluster.on("exit", (w, code, signal) => {
    const i = indexOf.get(w) ?? -1;
    indexOf.delete(w);
    if (stopping) {
      if (code !== 0) failed = true;
      if (alive().length === 0) {
        log.info("eProxy stopped (all workers)");
        process.exit(failed ? 1 : 0);
      }
      return;
    }
    // A worker that dies within 10 s of its start counts towards a crash loop (port taken, store down).
    if (Date.now() - (startedAt.get(i) ?? 0) < 10_000) fastFailures++;
    if (fastFailures > 2 * workers) {
      log.fatal({ worker: i, code, signal }, "workers keep failing at start: stopping");
      stop("crash loop", 1);
      return;
    }
    log.error({ worker: i, code, signal }, "worker exited: starting another");
    setTimeout(() => {
      if (!stopping) fork(i);
    }, 1_000).unref();
  });

  log.info({ workers, pid: process.pid }, "eProxy primary: starting workers (node:cluster, shared listener)");
  for (let i = 0; i < workers; i++) fork(i);
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}
