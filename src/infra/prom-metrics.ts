/**
 * The metrics adapter on prom-client: one registry per process (no global registry), Prometheus
 * names (`eproxy_<noun>_<unit>`, counters ending `_total`, durations in seconds), labels from
 * bounded sets only, and Node's process metrics. With `server.workers`, each worker keeps its own
 * registry and the primary aggregates them (`clusterScrape`).
 */
import { AggregatorRegistry, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import {
  type BreakerState,
  type Metrics,
  type ObservedSources,
  PSC_OPERATIONS,
} from "../observe/telemetry.ts";

/** A scrape: the exposition text and its content type. */
export interface Scrape {
  contentType: string;
  body: string;
}

/** Metrics backed by a prom-client registry. */
export interface PromMetrics {
  metrics: Metrics;
  registry: Registry;
  /** The exposition of this process's registry. */
  scrape(): Promise<Scrape>;
}

// Latency buckets from 5 ms (a cached token) to 60 s (a slow teleservice, a CIBA long poll).
const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const STORE_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const NON_COUNTER_TOTALS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];
const BREAKER_STATES: readonly BreakerState[] = ["closed", "half_open", "open"];

/** Creates the registry and every eProxy metric. */
export function createPromMetrics(opts: { defaultMetrics?: boolean } = {}): PromMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    // Gauges named like counters (promtool rejects them); the same counts stay available by type
    // in nodejs_active_handles / _requests / _resources.
    for (const name of NON_COUNTER_TOTALS) registry.removeSingleMetric(name);
  }
  const registers = [registry];

  const requests = new Histogram({
    name: "eproxy_request_duration_seconds",
    help: "Requests served (RPC or REST), by route template or RPC, protocol and code.",
    labelNames: ["route", "protocol", "code"] as const,
    buckets: SECONDS,
    registers,
  });
  const psc = new Histogram({
    name: "eproxy_psc_request_duration_seconds",
    help: "Calls to Pro Santé Connect, by operation, endpoint and outcome.",
    labelNames: ["operation", "endpoint", "outcome"] as const,
    buckets: SECONDS,
    registers,
  });
  const exchanges = new Histogram({
    name: "eproxy_token_exchange_duration_seconds",
    help: "RFC 8693 token exchanges at the teleservices' authorization servers, by teleservice and outcome.",
    labelNames: ["teleservice", "outcome"] as const,
    buckets: SECONDS,
    registers,
  });
  const upstream = new Histogram({
    name: "eproxy_upstream_request_duration_seconds",
    help: "Relayed calls to teleservices until the answer's last byte, by teleservice, HTTP status class and undici error code.",
    labelNames: ["teleservice", "status_class", "error_code"] as const,
    buckets: SECONDS,
    registers,
  });
  const cibaOutcomes = new Counter({
    name: "eproxy_ciba_outcomes_total",
    help: "CIBA requests that reached a final state, by outcome.",
    labelNames: ["outcome"] as const,
    registers,
  });
  const traceEvents = new Counter({
    name: "eproxy_trace_events_total",
    help: "Access traces recorded, by type.",
    labelNames: ["type"] as const,
    registers,
  });
  const store = new Histogram({
    name: "eproxy_store_operation_duration_seconds",
    help: "Store operations, by store (sessions, traces), operation and outcome.",
    labelNames: ["store", "operation", "outcome"] as const,
    buckets: STORE_SECONDS,
    registers,
  });
  const storeErrors = new Counter({
    name: "eproxy_store_errors_total",
    help: "Store operations that failed, by store (sessions, traces) and operation.",
    labelNames: ["store", "operation"] as const,
    registers,
  });
  const breakers = new Gauge({
    name: "eproxy_circuit_breaker_state",
    help: "Circuit-breaker state set: 1 for the current state of each breaker, 0 for the others.",
    labelNames: ["breaker", "state"] as const,
    registers,
    // Several workers: a breaker is reported open when it is open in any of them.
    aggregator: "max",
  });

  const sources: Partial<ObservedSources> = {};
  new Gauge({
    name: "eproxy_live_sessions",
    help: "Live sessions in the session store.",
    registers,
    // Every worker reads the same store.
    aggregator: "max",
    async collect() {
      const n = await sources.liveSessions?.().catch(() => undefined);
      if (n !== undefined) this.set(n);
    },
  });
  new Gauge({
    name: "eproxy_ciba_pending_requests",
    help: "CIBA requests being polled at PSC by this process.",
    registers,
    collect() {
      if (sources.cibaPending) this.set(sources.cibaPending());
    },
  });
  new Gauge({
    name: "eproxy_trace_spool_bytes",
    help: "Size of the trace spool (traces waiting for the trace store).",
    registers,
    collect() {
      if (sources.traceWriter) this.set(sources.traceWriter().spooledBytes);
    },
  });
  new Gauge({
    name: "eproxy_trace_queue_events",
    help: "Traces queued in memory, not yet written.",
    registers,
    collect() {
      if (sources.traceWriter) this.set(sources.traceWriter().queued);
    },
  });
  // The writer keeps the totals: these counters mirror them at scrape time.
  new Counter({
    name: "eproxy_trace_events_dropped_total",
    help: "Traces dropped because the spool was full.",
    registers,
    collect() {
      if (!sources.traceWriter) return;
      this.reset();
      this.inc(sources.traceWriter().dropped);
    },
  });
  new Counter({
    name: "eproxy_trace_events_written_total",
    help: "Traces written to the trace store.",
    registers,
    collect() {
      if (!sources.traceWriter) return;
      this.reset();
      this.inc(sources.traceWriter().written);
    },
  });

  new Counter({
    name: "eproxy_trace_spool_corrupt_total",
    help: "Spool records skipped on replay because torn (a crash mid-write) or corrupt.",
    registers,
    collect() {
      if (!sources.traceWriter) return;
      this.reset();
      this.inc(sources.traceWriter().corrupt ?? 0);
    },
  });
  new Counter({
    name: "eproxy_trace_spool_write_errors_total",
    help: "Spool writes that failed (disk full, read-only volume): the traces are held in memory.",
    registers,
    collect() {
      if (!sources.traceWriter) return;
      this.reset();
      this.inc(sources.traceWriter().spoolErrors ?? 0);
    },
  });
  new Gauge({
    name: "eproxy_trace_held_events",
    help: "Traces held in memory because neither the trace store nor the spool takes them (bounded).",
    registers,
    collect() {
      if (sources.traceWriter) this.set(sources.traceWriter().held ?? 0);
    },
  });

  const metrics: Metrics = {
    request: ({ route, protocol, code, seconds }) => requests.observe({ route, protocol, code }, seconds),
    pscCall: ({ operation, outcome, seconds }) => {
      const endpoint = PSC_OPERATIONS[operation];
      psc.observe({ operation, endpoint, outcome }, seconds);
    },
    tokenExchange: ({ teleservice, outcome, seconds }) =>
      exchanges.observe({ teleservice, outcome }, seconds),
    upstreamCall: ({ teleservice, statusClass, errorCode, seconds }) =>
      upstream.observe({ teleservice, status_class: statusClass, error_code: errorCode }, seconds),
    cibaOutcome: (outcome) => cibaOutcomes.inc({ outcome }),
    traceEvent: (type) => traceEvents.inc({ type }),
    storeCall: ({ store: name, operation, ok, seconds }) => {
      store.observe({ store: name, operation, outcome: ok ? "ok" : "error" }, seconds);
      if (!ok) storeErrors.inc({ store: name, operation });
    },
    breakerState: (breaker, state) => {
      for (const s of BREAKER_STATES) breakers.set({ breaker, state: s }, s === state ? 1 : 0);
    },
    observe: (s) => Object.assign(sources, s),
  };

  return {
    metrics,
    registry,
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

/**
 * In a worker of `server.workers`: hands this process's registry to the primary when it asks
 * (prom-client's cluster protocol over the IPC channel).
 */
export function shareWithPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // prom-client starts answering the primary's requests when an AggregatorRegistry is created.
  new AggregatorRegistry();
}

/**
 * In the primary of `server.workers`: one scrape that sums the workers' counters and histograms
 * (gauges by their declared aggregator). The primary serves no request: its own process metrics
 * are left out rather than reported twice under the same names.
 */
export function clusterScrape(): () => Promise<Scrape> {
  const aggregator = new AggregatorRegistry();
  return async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() });
}
