/**
 * Instrumentation as decorators of the ports the composition root wires (PSC gateway, upstream,
 * session store, trace sink): metrics and spans are added around the calls without the domain or
 * the adapters knowing. Each decorator is applied only when metrics or tracing are on.
 */
import { finished } from "node:stream";
import type { PscGateway } from "../auth/psc-gateway.ts";
import { EproxyError } from "../errors.ts";
import type { TokenExchange, Upstream } from "../relay/ports.ts";
import type { Traces } from "../trace/traces.ts";
import { PSC_OPERATIONS, type PscOperation, type Telemetry } from "./telemetry.ts";

/** An error's outcome label: the eProxy error code in lower case, `internal` for anything else. */
export function outcomeOf(err: unknown): string {
  return err instanceof EproxyError ? err.code.toLowerCase() : "internal";
}

// undici, Node and OpenSSL codes: a closed vocabulary in practice; anything else is "other".
const FOREIGN_CODE =
  /^(UND_ERR_[A-Z_]+|E[A-Z]{2,15}|ERR_[A-Z0-9_]{2,40}|CERT_[A-Z_]+|[A-Z_]*SELF_SIGNED[A-Z_]*|UNABLE_TO_[A-Z_]+|HOSTNAME_MISMATCH|ABORT_ERR)$/;

/**
 * The undici (or Node, or TLS) error code of a failure, walking `cause` chains past eProxy's own
 * errors: `none` when there is no foreign code, `other` when the code is not a known shape.
 */
export function foreignCodeOf(err: unknown): string {
  let e: unknown = err;
  for (let i = 0; i < 8 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (!(e instanceof EproxyError) && typeof code === "string") {
      if (code === "ERR_STREAM_PREMATURE_CLOSE") return "aborted";
      return FOREIGN_CODE.test(code) ? code : "other";
    }
    e = (e as { cause?: unknown }).cause;
  }
  return "none";
}

const seconds = (started: number) => (performance.now() - started) / 1000;

/** What each instrumented PSC method is called, and how its answer reads as an outcome. */
const PSC_METHODS: Record<string, { operation: PscOperation; outcome?: (v: unknown) => string }> = {
  startCiba: { operation: "ciba_start" },
  pollCiba: { operation: "ciba_poll", outcome: (v) => (v as { kind: string }).kind },
  exchangeCode: { operation: "code_exchange" },
  refresh: { operation: "refresh" },
  userinfo: { operation: "userinfo" },
  endSession: { operation: "end_session", outcome: (v) => (v ? "ok" : "refused") },
  revoke: { operation: "revoke" },
  ready: { operation: "discovery" },
};

/**
 * PSC calls: a client span each (sending `traceparent` to PSC) and `eproxy_psc_request_duration_seconds`
 * by operation, endpoint and outcome. Readiness probes (`ready`) are counted but not traced.
 */
export function instrumentPsc(psc: PscGateway, t: Telemetry): PscGateway {
  const wrapped = new Map<string, unknown>();
  return new Proxy(psc, {
    get(target, prop) {
      const original = Reflect.get(target, prop, target) as unknown;
      const spec = typeof prop === "string" ? PSC_METHODS[prop] : undefined;
      if (!spec || typeof original !== "function") return original;
      let fn = wrapped.get(prop as string);
      if (!fn) {
        const { operation } = spec;
        const outcomeOfValue = spec.outcome ?? (() => "ok");
        const attrs = { "eproxy.psc.operation": operation, "eproxy.psc.endpoint": PSC_OPERATIONS[operation] };
        fn = (...args: unknown[]) => {
          const started = performance.now();
          const call = () => (original as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          const p =
            operation === "discovery"
              ? call()
              : t.tracing.span(`PSC ${operation}`, attrs, call, { propagate: true });
          return p.then(
            (v) => {
              t.metrics.pscCall({ operation, outcome: outcomeOfValue(v), seconds: seconds(started) });
              return v;
            },
            (err: unknown) => {
              t.metrics.pscCall({ operation, outcome: outcomeOf(err), seconds: seconds(started) });
              throw err;
            },
          );
        };
        wrapped.set(prop as string, fn);
      }
      return fn;
    },
  });
}

/**
 * The teleservices: a span around each relayed call, sending `traceparent` to the teleservice only
 * when its `propagateTraceContext` option says so (a header, never a byte of the SOAP body), and
 * `eproxy_upstream_request_duration_seconds` by teleservice, status class and undici error code.
 */
export function instrumentUpstream(up: Upstream, t: Telemetry): Upstream {
  return {
    ...up,
    async post(p) {
      const started = performance.now();
      const teleservice = p.teleservice.name;
      const span = t.tracing.start(`upstream ${teleservice}`, {
        "eproxy.teleservice": teleservice,
        "http.request.method": "POST",
        "server.address": p.url.hostname,
      });
      const headers = p.teleservice.propagateTraceContext ? { ...p.headers, ...span.headers() } : p.headers;
      let res: Awaited<ReturnType<Upstream["post"]>>;
      try {
        res = await span.run(() => up.post({ ...p, headers }));
      } catch (err) {
        span.end(err);
        t.metrics.upstreamCall({
          teleservice,
          statusClass: "none",
          errorCode: foreignCodeOf(err),
          seconds: seconds(started),
        });
        throw err;
      }
      const statusClass = `${Math.floor(res.status / 100)}xx`;
      span.set({ "http.response.status_code": res.status });
      // Measured to the answer's last byte: a teleservice that stalls mid-body shows here.
      finished(res.body, (err) => {
        const errorCode = err ? foreignCodeOf(err) : "none";
        t.metrics.upstreamCall({ teleservice, statusClass, errorCode, seconds: seconds(started) });
        span.end(err);
      });
      return res;
    },
    close: () => up.close(),
  };
}

/**
 * Token exchanges: a span each (sending `traceparent` to the authorization server) and
 * `eproxy_token_exchange_duration_seconds` by teleservice and outcome.
 */
export function instrumentTokenExchange(te: TokenExchange, t: Telemetry): TokenExchange {
  return {
    async exchange(p) {
      const started = performance.now();
      const teleservice = p.teleservice.name;
      try {
        const v = await t.tracing.span(
          `token exchange ${teleservice}`,
          { "eproxy.teleservice": teleservice },
          () => te.exchange(p),
          { propagate: true },
        );
        t.metrics.tokenExchange({ teleservice, outcome: "ok", seconds: seconds(started) });
        return v;
      } catch (err) {
        t.metrics.tokenExchange({ teleservice, outcome: outcomeOf(err), seconds: seconds(started) });
        throw err;
      }
    },
  };
}

/**
 * A store (sessions or traces): `eproxy_store_operation_duration_seconds` by store, operation and
 * outcome and `eproxy_store_errors_total`, around every method that returns a promise; with
 * tracing, a span per operation made while serving a request (background work starts no trace).
 */
export function instrumentStore<T extends object>(store: T, t: Telemetry, name: "sessions" | "traces"): T {
  const wrapped = new Map<string | symbol, unknown>();
  return new Proxy(store, {
    get(target, prop) {
      const original = Reflect.get(target, prop, target) as unknown;
      if (typeof original !== "function" || typeof prop !== "string" || prop === "close") return original;
      let fn = wrapped.get(prop);
      if (!fn) {
        const attrs = { "eproxy.store": name, "db.operation.name": prop };
        fn = (...args: unknown[]) => {
          const started = performance.now();
          const span = t.tracing.start(`${name} ${prop}`, attrs, { childOnly: true });
          let r: unknown;
          try {
            r = span.run(() => (original as (...a: unknown[]) => unknown).apply(target, args));
          } catch (err) {
            span.end(err);
            throw err;
          }
          if (!r || typeof (r as Promise<unknown>).then !== "function") {
            span.end();
            return r;
          }
          return (r as Promise<unknown>).then(
            (v) => {
              t.metrics.storeCall({ store: name, operation: prop, ok: true, seconds: seconds(started) });
              span.end();
              return v;
            },
            (err: unknown) => {
              t.metrics.storeCall({ store: name, operation: prop, ok: false, seconds: seconds(started) });
              span.end(err);
              throw err;
            },
          );
        };
        wrapped.set(prop, fn);
      }
      return fn;
    },
  });
}

const CIBA_OUTCOMES = new Set(["approved", "denied", "expired", "failed", "cancelled"]);

/**
 * The trace sink: `eproxy_trace_events_total` by type, and the CIBA outcomes (the domain records
 * each CIBA request's end as one CONNECT_SUCCESS or CONNECT_FAILURE trace).
 */
export function observeTraces<T extends Traces>(traces: T, t: Telemetry): T {
  const record = traces.record;
  return {
    ...traces,
    record(e) {
      t.metrics.traceEvent(e.type);
      if (e.method === "CIBA" && (e.type === "CONNECT_SUCCESS" || e.type === "CONNECT_FAILURE")) {
        const o = (e.outcome ?? "").toLowerCase();
        t.metrics.cibaOutcome(CIBA_OUTCOMES.has(o) ? o : "other");
      }
      record(e);
    },
  };
}
