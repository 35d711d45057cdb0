/**
 * The telemetry port: what eProxy measures (metrics) and how it follows one call across services
 * (tracing), as interfaces with no dependency. Domain code and the composition root talk to these;
 * the prom-client and OpenTelemetry adapters live in `infra/` and are created only when configured,
 * so an eProxy without an admin listener or an OTLP endpoint runs the no-op versions below.
 *
 * Every label value passed here must come from a bounded set (a route template, a configured
 * teleservice name, an error code): never a national id, a session, or a URL path with ids.
 */

/** Circuit-breaker states, as a Prometheus state set. */
export type BreakerState = "closed" | "half_open" | "open";

/** PSC operations, each mapped to the PSC endpoint it calls. */
export const PSC_OPERATIONS = {
  ciba_start: "backchannel_authentication",
  ciba_poll: "token",
  code_exchange: "token",
  refresh: "token",
  userinfo: "userinfo",
  end_session: "end_session",
  revoke: "revocation",
  discovery: "discovery",
} as const;

/** One PSC operation. */
export type PscOperation = keyof typeof PSC_OPERATIONS;

/** Values read when metrics are scraped (not on the request path). */
export interface ObservedSources {
  /** The trace writer's counters. */
  traceWriter: () => {
    queued: number;
    spooledBytes: number;
    written: number;
    dropped: number;
    corrupt?: number;
    held?: number;
    spoolErrors?: number;
  };
  /** CIBA requests this process is polling. */
  cibaPending: () => number;
  /** Live sessions in the session store (undefined when the store cannot count cheaply). */
  liveSessions: () => Promise<number | undefined>;
}

/** What eProxy measures. Every method is cheap and never throws. */
export interface Metrics {
  /** One served request (RPC or REST) with its route template, protocol and code. */
  request(p: { route: string; protocol: string; code: string; seconds: number }): void;
  /** One call to Pro Santé Connect. */
  pscCall(p: { operation: PscOperation; outcome: string; seconds: number }): void;
  /** One RFC 8693 token exchange at a teleservice's authorization server. */
  tokenExchange(p: { teleservice: string; outcome: string; seconds: number }): void;
  /** One relayed call to a teleservice, measured until its answer's last byte (or the failure). */
  upstreamCall(p: { teleservice: string; statusClass: string; errorCode: string; seconds: number }): void;
  /** The final state of a CIBA request (approved, denied, expired, failed). */
  cibaOutcome(outcome: string): void;
  /** One access trace recorded, by type. */
  traceEvent(type: string): void;
  /** One operation of a store: `sessions` (memory or Redis) or `traces` (MongoDB or the file). */
  storeCall(p: { store: "sessions" | "traces"; operation: string; ok: boolean; seconds: number }): void;
  /** The current state of a circuit breaker (set on every transition). */
  breakerState(breaker: string, state: BreakerState): void;
  /** Registers values read at scrape time. */
  observe(sources: Partial<ObservedSources>): void;
}

/** Span attributes (bounded values, no personal data). */
export type SpanAttributes = Record<string, string | number | boolean>;

/** Options of an outbound span. */
export interface SpanOptions {
  /**
   * Send the W3C `traceparent` of this span on the HTTP requests made inside it (PSC, the
   * authorization servers). The relay's upstream call passes headers itself and leaves this off.
   */
  propagate?: boolean;
  /** Only inside a request's trace: no span (and no new trace) when there is no current span. */
  childOnly?: boolean;
}

/** A started span. */
export interface ActiveSpan {
  /** Runs `fn` with this span as the parent of spans and outbound headers created inside. */
  run<T>(fn: () => T): T;
  /** Adds attributes. */
  set(attrs: SpanAttributes): void;
  /** The W3C headers (`traceparent`, `tracestate`) naming this span as the parent. */
  headers(): Record<string, string>;
  /** Ends the span; an error marks it failed with its code. */
  end(err?: unknown): void;
}

/** The span of one incoming request. */
export interface RequestSpan {
  /** Runs the handler inside the request's span. */
  run<T>(fn: () => T): T;
  /** Ends it with the final route (span name), HTTP status and code. */
  end(p: { route: string; status: number; code: string; attributes?: SpanAttributes }): void;
}

/** Distributed tracing (OpenTelemetry when configured). */
export interface Tracing {
  /** True when spans are exported (lets callers skip building attributes). */
  readonly enabled: boolean;
  /** Starts the server span of a request, child of the caller's `traceparent` when it sent one. */
  startRequest(headers: Record<string, string | string[] | undefined>, attrs: SpanAttributes): RequestSpan;
  /** Starts a client span, child of the current one. */
  start(name: string, attrs?: SpanAttributes, opts?: SpanOptions): ActiveSpan;
  /** Runs `fn` inside a client span that ends when `fn` settles. */
  span<T>(name: string, attrs: SpanAttributes, fn: () => Promise<T>, opts?: SpanOptions): Promise<T>;
  /** Flushes and stops the exporter. */
  shutdown(): Promise<void>;
}

/** Metrics and tracing, created once in the composition root. */
export interface Telemetry {
  metrics: Metrics;
  tracing: Tracing;
}

/** Metrics that record nothing (no admin listener). */
export const noopMetrics: Metrics = {
  request() {},
  pscCall() {},
  tokenExchange() {},
  upstreamCall() {},
  cibaOutcome() {},
  traceEvent() {},
  storeCall() {},
  breakerState() {},
  observe() {},
};

const noopSpan: ActiveSpan = {
  run: (fn) => fn(),
  set() {},
  headers: () => ({}),
  end() {},
};
const noopRequestSpan: RequestSpan = { run: (fn) => fn(), end() {} };

/** Tracing that records nothing (no OTLP endpoint): no SDK loaded, no allocation per call. */
export const noopTracing: Tracing = {
  enabled: false,
  startRequest: () => noopRequestSpan,
  start: () => noopSpan,
  span: (_name, _attrs, fn) => fn(),
  shutdown: async () => {},
};

/** Telemetry that records nothing. */
export const noopTelemetry: Telemetry = { metrics: noopMetrics, tracing: noopTracing };
