/**
 * The telemetry decorators and the prom-client adapter, without a network: what each instrumented
 * port records (names, labels, outcomes), that bounded labels stay bounded, and that the no-op
 * telemetry costs nothing.
 */
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { PscGateway } from "../../src/auth/psc-gateway.ts";
import { ConfigError, parseConfig, type TeleserviceConfig } from "../../src/config.ts";
import { EproxyError } from "../../src/errors.ts";
import { createPromMetrics } from "../../src/infra/prom-metrics.ts";
import type { RequestContext } from "../../src/log.ts";
import { requestLabels } from "../../src/observe/http.ts";
import {
  foreignCodeOf,
  instrumentPsc,
  instrumentStore,
  instrumentTokenExchange,
  instrumentUpstream,
  observeTraces,
} from "../../src/observe/instrument.ts";
import { noopTracing, type Telemetry } from "../../src/observe/telemetry.ts";
import type { Upstream } from "../../src/relay/ports.ts";

function telemetry(): { t: Telemetry; text: () => Promise<string> } {
  const prom = createPromMetrics({ defaultMetrics: false });
  return { t: { metrics: prom.metrics, tracing: noopTracing }, text: async () => (await prom.scrape()).body };
}

const insi = { name: "insi", propagateTraceContext: false } as TeleserviceConfig;

describe("instrumented ports", () => {
  it("PSC calls: operation, endpoint and outcome (a poll's outcome is its kind, errors their code)", async () => {
    const { t, text } = telemetry();
    const psc = instrumentPsc(
      {
        pollCiba: async () => ({ kind: "slow_down" }),
        refresh: async () => {
          throw new EproxyError("PSC_UNAVAILABLE", "down");
        },
        close: async () => {},
      } as unknown as PscGateway,
      t,
    );
    await psc.pollCiba("c", "r");
    await expect(psc.refresh("c", "rt")).rejects.toThrow("down");
    const out = await text();
    expect(out).toContain(
      'eproxy_psc_request_duration_seconds_count{operation="ciba_poll",endpoint="token",outcome="slow_down"} 1',
    );
    expect(out).toContain(
      'eproxy_psc_request_duration_seconds_count{operation="refresh",endpoint="token",outcome="psc_unavailable"} 1',
    );
  });

  it("upstream: measured to the last body byte, status class, undici code of a failure", async () => {
    const { t, text } = telemetry();
    const connectError = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    let seenHeaders: Record<string, string> = {};
    const up = instrumentUpstream(
      {
        async post(p) {
          seenHeaders = p.headers;
          if (p.url.hostname === "down.example") {
            throw new EproxyError("UPSTREAM_UNAVAILABLE", "unreachable", { cause: connectError });
          }
          return { status: 500, headers: {}, body: Readable.from([Buffer.from("<fault/>")]) };
        },
        close: async () => {},
      } as Upstream,
      t,
    );
    const body = { async *[Symbol.asyncIterator]() {} };
    const res = await up.post({
      clientId: "c",
      teleservice: insi,
      url: new URL("https://ts.example/x"),
      headers: { a: "1" },
      body,
    });
    expect(seenHeaders).toEqual({ a: "1" });
    // Not counted until the body has been read.
    expect(await text()).not.toContain('status_class="5xx"');
    for await (const _ of res.body) {
      // drain
    }
    await new Promise((r) => setImmediate(r));
    await expect(
      up.post({ clientId: "c", teleservice: insi, url: new URL("https://down.example/"), headers: {}, body }),
    ).rejects.toThrow("unreachable");
    const out = await text();
    expect(out).toContain(
      'eproxy_upstream_request_duration_seconds_count{teleservice="insi",status_class="5xx",error_code="none"} 1',
    );
    expect(out).toContain(
      'eproxy_upstream_request_duration_seconds_count{teleservice="insi",status_class="none",error_code="ECONNREFUSED"} 1',
    );
  });

  it("token exchange: teleservice and outcome", async () => {
    const { t, text } = telemetry();
    const te = instrumentTokenExchange(
      {
        exchange: async () => {
          throw new EproxyError("REAUTHENTICATION_REQUIRED", "no");
        },
      },
      t,
    );
    await expect(te.exchange({ clientId: "c", teleservice: insi, subjectToken: "x" })).rejects.toThrow();
    expect(await text()).toContain(
      'eproxy_token_exchange_duration_seconds_count{teleservice="insi",outcome="reauthentication_required"} 1',
    );
  });

  it("store: every async method timed by name, failures counted", async () => {
    const { t, text } = telemetry();
    const store = instrumentStore(
      {
        ping: async () => {},
        getSession: async () => {
          throw new EproxyError("STORE_UNAVAILABLE", "down");
        },
        close: async () => {},
      },
      t,
      "sessions",
    );
    await store.ping();
    await expect(store.getSession()).rejects.toThrow();
    await store.close();
    const out = await text();
    expect(out).toContain(
      'eproxy_store_operation_duration_seconds_count{store="sessions",operation="ping",outcome="ok"} 1',
    );
    expect(out).toContain(
      'eproxy_store_operation_duration_seconds_count{store="sessions",operation="getSession",outcome="error"} 1',
    );
    expect(out).toContain('eproxy_store_errors_total{store="sessions",operation="getSession"} 1');
    expect(out).not.toContain('operation="close"');
  });

  it("traces: counted by type; a CIBA request's end counted by outcome (an unknown one as other)", async () => {
    const { t, text } = telemetry();
    const recorded: unknown[] = [];
    const traces = observeTraces({ record: (e) => recorded.push(e) }, t);
    traces.record({ type: "CONNECT_FAILURE", method: "CIBA", outcome: "DENIED" });
    traces.record({ type: "CONNECT_FAILURE", method: "CIBA", outcome: "899700218896" });
    traces.record({ type: "CONNECT_FAILURE", method: "CODE_FLOW", outcome: "access_denied" });
    expect(recorded).toHaveLength(3);
    const out = await text();
    expect(out).toContain('eproxy_trace_events_total{type="CONNECT_FAILURE"} 3');
    expect(out).toContain('eproxy_ciba_outcomes_total{outcome="denied"} 1');
    expect(out).toContain('eproxy_ciba_outcomes_total{outcome="other"} 1');
    expect(out).not.toContain("899700218896");
  });

  it("circuit breakers: a state set, 1 for the current state", async () => {
    const { t, text } = telemetry();
    t.metrics.breakerState("psc-refresh", "open");
    const out = await text();
    expect(out).toContain('eproxy_circuit_breaker_state{breaker="psc-refresh",state="open"} 1');
    expect(out).toContain('eproxy_circuit_breaker_state{breaker="psc-refresh",state="closed"} 0');
  });

  it("scrape-time sources: trace spool, drops, pending CIBA, live sessions", async () => {
    const { t, text } = telemetry();
    t.metrics.observe({
      traceWriter: () => ({ queued: 2, spooledBytes: 512, written: 10, dropped: 3 }),
      cibaPending: () => 4,
      liveSessions: async () => 7,
    });
    const out = await text();
    for (const line of [
      "eproxy_trace_spool_bytes 512",
      "eproxy_trace_queue_events 2",
      "eproxy_trace_events_dropped_total 3",
      "eproxy_trace_events_written_total 10",
      "eproxy_ciba_pending_requests 4",
      "eproxy_live_sessions 7",
    ]) {
      expect(out).toContain(line);
    }
  });
});

describe("labels", () => {
  const ctx = (access: RequestContext["access"]): RequestContext => ({ requestId: "r", access });

  it("route templates and codes, never raw paths", () => {
    const rest = { method: "POST", url: "/send/insi/a/b?x=1", headers: {} };
    expect(requestLabels(rest, 200, true, ctx({ route: "/send/:service/*", code: "OK" }))).toEqual({
      route: "POST /send/:service/*",
      protocol: "rest",
      code: "ok",
    });
    expect(requestLabels({ ...rest, url: "/x/899700218896" }, 404, true, ctx({}))).toEqual({
      route: "unmatched",
      protocol: "rest",
      code: "http_404",
    });
    const grpc = {
      method: "POST",
      url: "/eproxy.v1.AuthService/StartCiba",
      headers: { "content-type": "application/grpc+proto" },
    };
    expect(requestLabels(grpc, 200, false, ctx({ route: "/eproxy.v1.AuthService/StartCiba" }))).toEqual({
      route: "/eproxy.v1.AuthService/StartCiba",
      protocol: "grpc",
      code: "canceled",
    });
  });

  it("foreign codes: undici/Node/TLS shapes kept, anything else is other", () => {
    const wrap = (code: string) =>
      new EproxyError("UPSTREAM_BAD_RESPONSE", "x", { cause: Object.assign(new Error(), { code }) });
    expect(foreignCodeOf(wrap("UND_ERR_HEADERS_TIMEOUT"))).toBe("UND_ERR_HEADERS_TIMEOUT");
    expect(foreignCodeOf(wrap("ERR_TLS_CERT_ALTNAME_INVALID"))).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
    expect(foreignCodeOf(wrap("some free text"))).toBe("other");
    expect(foreignCodeOf(new EproxyError("INTERNAL", "x"))).toBe("none");
  });
});

describe("configuration", () => {
  const base = {
    server: { port: 8443, tls: { certFile: "c.pem", keyFile: "k.pem" } },
    psc: { discoveryUrl: "https://psc.example/.well-known/openid-configuration" },
  };

  it("admin listener off and tracing off by default; loopback when only the port is given", () => {
    const c = parseConfig(base, {});
    expect(c.admin.port).toBeUndefined();
    expect(c.tracing).toBeUndefined();
    const on = parseConfig(
      { ...base, admin: { port: 9464 } },
      { EPROXY_OTLP_ENDPOINT: "http://127.0.0.1:4318/v1/traces" },
    );
    expect(on.admin).toEqual({ listenAddress: "127.0.0.1", port: 9464 });
    expect(on.tracing?.otlpEndpoint).toBe("http://127.0.0.1:4318/v1/traces");
    expect(parseConfig(base, { EPROXY_ADMIN_PORT: "9100" }).admin.port).toBe(9100);
  });

  it("refuses the public port for the admin listener, naming the key", () => {
    expect(() => parseConfig({ ...base, admin: { port: 8443 } }, {})).toThrow(ConfigError);
    expect(() => parseConfig({ ...base, admin: { port: 8443 } }, {})).toThrow(/admin\.port: .*own port/);
    expect(() => parseConfig({ ...base, tracing: { otlpEndpoint: "nope" } }, {})).toThrow(
      /tracing\.otlpEndpoint/,
    );
  });
});
