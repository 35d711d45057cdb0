/**
 * The observability tier: eProxy with its admin listener and OTLP tracing to a real Jaeger
 * (all-in-one, in-memory storage), driven through a CIBA login and a relay by a caller that sends a
 * W3C `traceparent`. Asserts the metrics that moved (names and labels), Prometheus's own linter
 * (`promtool check metrics`) on the scrape, the trace as Jaeger stored it (spans, one trace id across
 * PSC, the token exchange and the upstream call, parent links), the `traceparent` headers PSC, the
 * authorization server and the teleservice received, and the access log lines.
 *
 * Needs `jaeger` and `promtool` (`.ci/install-tools.sh jaeger promtool`); without them the tier is
 * skipped with a banner, and fails under EPROXY_REQUIRE_SERVERS=1 (CI).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/eproxy/v1/auth_pb.ts";
import { freePort } from "../../src/infra/free-port.ts";
import { ACTIONS, insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, DOCTOR, startAuthEnv } from "../support/auth-env.ts";

function tool(name: string): string | undefined {
  try {
    const found = execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim();
    if (found) return found;
  } catch {
    // not on the PATH
  }
  const inGoBin = path.join(homedir(), "go/bin", name);
  return existsSync(inGoBin) ? inGoBin : undefined;
}

const jaegerBin = tool("jaeger");
const promtoolBin = tool("promtool");
const missing = [
  ...(jaegerBin ? [] : ["jaeger (.ci/install-tools.sh jaeger)"]),
  ...(promtoolBin ? [] : ["promtool (.ci/install-tools.sh promtool)"]),
];
const required = process.env.EPROXY_REQUIRE_SERVERS === "1";
if (missing.length && !required) {
  const bar = "!".repeat(78);
  process.stderr.write(`\n${bar}\n!! observability tier SKIPPED: missing ${missing.join(", ")}\n${bar}\n\n`);
}

describe("observability tier prerequisites", () => {
  // In CI a missing tool is a failure, not a silent skip.
  it.runIf(required)("has Jaeger and promtool installed", () => {
    expect(missing, `missing: ${missing.join(", ")}`).toEqual([]);
  });
});

/** A Jaeger all-in-one on free loopback ports, in-memory storage, OTLP/HTTP receiver only. */
async function startJaeger(
  bin: string,
): Promise<{ otlpUrl: string; queryUrl: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-jaeger-"));
  const [otlp, query, queryGrpc] = [await freePort(), await freePort(), await freePort()];
  const file = path.join(dir, "jaeger.yaml");
  writeFileSync(
    file,
    `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:${query}
    grpc:
      endpoint: 127.0.0.1:${queryGrpc}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`,
  );
  let output = "";
  const child: ChildProcess = spawn(bin, ["--config", file], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.on("data", (c: Buffer) => {
    output += c;
  });
  child.stderr?.on("data", (c: Buffer) => {
    output += c;
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 45_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`jaeger exited (${child.exitCode}):\n${output}`);
    const up = await Promise.all([otlp, query].map((p) => portOpen(p)));
    if (up.every(Boolean)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`jaeger did not open its ports in 45 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { otlpUrl: `http://127.0.0.1:${otlp}/v1/traces`, queryUrl: `http://127.0.0.1:${query}`, stop };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** One sample of the Prometheus text format. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample with this name and (at least) these labels; undefined when absent. */
function sampleValue(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return found.length ? found.reduce((n, s) => n + s.value, 0) : undefined;
}

interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: Array<{ refType: string; traceID: string; spanID: string }>;
  tags: Array<{ key: string; value: unknown }>;
}

const SOAP12 = `application/soap+xml; charset=utf-8; action="${ACTIONS.insiSearch}"`;
const SEND_ROUTE = "POST /send/:service/*";

describe.skipIf(missing.length > 0)(
  "observability: metrics, promtool, traces in Jaeger, access lines",
  () => {
    let jaeger: Awaited<ReturnType<typeof startJaeger>>;
    let env: AuthEnv;
    const logLines: Array<Record<string, unknown>> = [];
    const traceId = randomBytes(16).toString("hex");
    const callerSpanId = randomBytes(8).toString("hex");
    const traceparent = `00-${traceId}-${callerSpanId}-01`;
    let scrape = "";
    let relayRequestId = "";
    let insiHeaders: Record<string, unknown> = {};
    let echoHeaders: Record<string, unknown> = {};

    beforeAll(async () => {
      jaeger = await startJaeger(jaegerBin as string);
      let pending = "";
      const logDestination = new Writable({
        write(chunk: Buffer, _enc, done) {
          pending += chunk.toString();
          let nl = pending.indexOf("\n");
          while (nl >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            try {
              logLines.push(JSON.parse(line));
            } catch {
              // not a JSON line
            }
            nl = pending.indexOf("\n");
          }
          done();
        },
      });
      env = await startAuthEnv({
        logDestination,
        teleservices: [
          { name: "insi", propagateTraceContext: true },
          { name: "down", upstreamUrl: `https://127.0.0.1:${await freePort()}/x`, connectTimeoutMs: 2_000 },
        ],
        extra: {
          admin: { listenAddress: "127.0.0.1", port: 0 },
          tracing: { otlpEndpoint: jaeger.otlpUrl, batchDelayMs: 200, serviceName: "eproxy-ci" },
        },
      });

      // The caller: one trace across its CIBA login and its relayed call.
      const withCaller: Interceptor = (next) => (req) => {
        req.header.set("x-eproxy-api-key", env.keys["lps-demo"]);
        req.header.set("traceparent", traceparent);
        return next(req);
      };
      const auth = createClient(
        AuthService,
        createGrpcTransport({ baseUrl: env.url, nodeOptions: { ca: env.ca }, interceptors: [withCaller] }),
      );
      const sessionToken = await cibaLogin(auth, DOCTOR);
      const relayed = await env.http("POST", "/send/insi/rechercherInsAvecTraitsIdentite", {
        headers: {
          "x-eproxy-api-key": env.keys["lps-demo"],
          authorization: `Bearer ${sessionToken}`,
          "content-type": SOAP12,
          traceparent,
        },
        body: insiSearchRequest("UNIQUE"),
      });
      expect(relayed.status, relayed.body).toBe(200);
      relayRequestId = String(relayed.headers["x-request-id"]);
      insiHeaders = { ...env.tele.stats.lastHeaders };
      // A teleservice without propagateTraceContext gets no traceparent from eProxy.
      const echo = await env.http("POST", "/send/echo/a", {
        headers: {
          "x-eproxy-api-key": env.keys["lps-demo"],
          authorization: `Bearer ${sessionToken}`,
          "content-type": SOAP12,
        },
        body: insiSearchRequest("UNIQUE"),
      });
      expect(echo.status, echo.body).toBe(200);
      echoHeaders = { ...env.tele.stats.lastHeaders };
      // A teleservice that is down: the upstream metric carries the connection error's code.
      const down = await env.http("POST", "/send/down/x", {
        headers: {
          "x-eproxy-api-key": env.keys["lps-demo"],
          authorization: `Bearer ${sessionToken}`,
          "content-type": SOAP12,
        },
        body: insiSearchRequest("UNIQUE"),
      });
      expect(down.status).toBeGreaterThanOrEqual(500);
      await env.http("GET", "/no/such/route");
      await env.deps.traces.flush();

      expect(env.server.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const res = await fetch(env.server.metricsUrl as string);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
      scrape = await res.text();
    }, 120_000);

    afterAll(async () => {
      await env?.close();
      await jaeger?.stop();
    });

    it("serves /metrics on the admin listener only, not on the public port", async () => {
      const pub = await env.http("GET", "/metrics");
      expect(pub.status).toBe(404);
      const other = await fetch(new URL("/other", env.server.metricsUrl as string));
      expect(other.status).toBe(404);
    });

    it("moved the metrics of the CIBA login and the relay, by name and labels", () => {
      const s = parseExposition(scrape);
      const count = (name: string, labels: Record<string, string>) => sampleValue(s, `${name}_count`, labels);
      const req = "eproxy_request_duration_seconds";
      expect(count(req, { route: "/eproxy.v1.AuthService/StartCiba", protocol: "grpc", code: "ok" })).toBe(1);
      expect(count(req, { route: "/eproxy.v1.AuthService/WatchCiba", protocol: "grpc", code: "ok" })).toBe(1);
      expect(count(req, { route: SEND_ROUTE, protocol: "rest", code: "ok" })).toBe(2);
      expect(count(req, { route: SEND_ROUTE, protocol: "rest", code: "upstream_unavailable" })).toBe(1);
      expect(count(req, { route: "unmatched", protocol: "rest", code: "http_404" })).toBe(1);

      const psc = "eproxy_psc_request_duration_seconds";
      expect(
        count(psc, { operation: "ciba_start", endpoint: "backchannel_authentication", outcome: "ok" }),
      ).toBe(1);
      expect(count(psc, { operation: "ciba_poll", endpoint: "token", outcome: "approved" })).toBe(1);
      expect(count(psc, { operation: "userinfo", endpoint: "userinfo", outcome: "ok" })).toBe(1);

      expect(count("eproxy_token_exchange_duration_seconds", { teleservice: "insi", outcome: "ok" })).toBe(1);
      const up = "eproxy_upstream_request_duration_seconds";
      expect(count(up, { teleservice: "insi", status_class: "2xx", error_code: "none" })).toBe(1);
      expect(count(up, { teleservice: "down", status_class: "none", error_code: "ECONNREFUSED" })).toBe(1);

      expect(sampleValue(s, "eproxy_ciba_outcomes_total", { outcome: "approved" })).toBe(1);
      expect(sampleValue(s, "eproxy_trace_events_total", { type: "CONNECT_SUCCESS" })).toBe(1);
      expect(sampleValue(s, "eproxy_trace_events_total", { type: "EXCHANGE" })).toBe(1);
      expect(sampleValue(s, "eproxy_trace_events_total", { type: "SEND" })).toBe(2);
      expect(
        count("eproxy_store_operation_duration_seconds", {
          store: "sessions",
          operation: "putSession",
          outcome: "ok",
        }),
      ).toBeGreaterThanOrEqual(1);
      expect(
        count("eproxy_store_operation_duration_seconds", {
          store: "sessions",
          operation: "getSession",
          outcome: "ok",
        }),
      ).toBeGreaterThanOrEqual(1);
      expect(
        count("eproxy_store_operation_duration_seconds", {
          store: "traces",
          operation: "insertMany",
          outcome: "ok",
        }),
      ).toBeGreaterThanOrEqual(1);
      expect(sampleValue(s, "eproxy_store_errors_total")).toBeUndefined();

      expect(sampleValue(s, "eproxy_ciba_pending_requests")).toBe(0);
      expect(sampleValue(s, "eproxy_circuit_breaker_state", { breaker: "psc-token", state: "closed" })).toBe(
        1,
      );
      expect(sampleValue(s, "eproxy_circuit_breaker_state", { breaker: "psc-token", state: "open" })).toBe(0);
      expect(sampleValue(s, "eproxy_circuit_breaker_state", { breaker: "as:insi", state: "closed" })).toBe(1);
      expect(sampleValue(s, "eproxy_live_sessions")).toBe(1);
      expect(sampleValue(s, "eproxy_trace_spool_bytes")).toBe(0);
      expect(sampleValue(s, "eproxy_trace_events_dropped_total")).toBe(0);
      expect(sampleValue(s, "eproxy_trace_events_written_total")).toBeGreaterThanOrEqual(3);
      // Process metrics (prom-client's defaults).
      expect(sampleValue(s, "process_cpu_seconds_total")).toBeGreaterThan(0);
      expect(sampleValue(s, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
      // Bounded labels: no national id, no session token, no request path with ids.
      expect(scrape).not.toContain(DOCTOR);
      expect(scrape).not.toContain("rechercherInsAvecTraitsIdentite");
    });

    it("passes `promtool check metrics` (Prometheus's linter) without a finding", () => {
      const r = spawnSync(promtoolBin as string, ["check", "metrics"], { input: scrape, encoding: "utf8" });
      const said = `${r.stdout}${r.stderr}`.trim();
      process.stdout.write(
        `promtool check metrics: exit ${r.status}${said ? `\n${said}` : ", no finding"}\n`,
      );
      expect(said).toBe("");
      expect(r.status).toBe(0);
    });

    it("exports one trace to Jaeger across the RPCs, PSC, the token exchange and the upstream call", async () => {
      const wanted = [
        "/eproxy.v1.AuthService/StartCiba",
        "/eproxy.v1.AuthService/WatchCiba",
        SEND_ROUTE,
        "PSC ciba_start",
        "PSC ciba_poll",
        "PSC userinfo",
        "token exchange insi",
        "upstream insi",
      ];
      let spans: JaegerSpan[] = [];
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const res = await fetch(`${jaeger.queryUrl}/api/traces/${traceId}`);
        if (res.ok) {
          const body = (await res.json()) as { data?: Array<{ spans: JaegerSpan[] }> };
          spans = body.data?.flatMap((t) => t.spans) ?? [];
          if (wanted.every((w) => spans.some((sp) => sp.operationName === w))) break;
        }
        await new Promise((r) => setTimeout(r, 300));
      }
      const names = spans.map((sp) => sp.operationName);
      process.stdout.write(
        `Jaeger trace ${traceId}:\n${spans
          .map((sp) => {
            const parent = sp.references.find((r) => r.refType === "CHILD_OF")?.spanID ?? "-";
            const parentName =
              parent === callerSpanId
                ? "(caller)"
                : (spans.find((p) => p.spanID === parent)?.operationName ?? parent);
            return `  ${sp.operationName}  <- ${parentName}`;
          })
          .join("\n")}\n`,
      );
      for (const w of wanted) expect(names, `span ${w}`).toContain(w);
      // One trace id everywhere.
      expect(new Set(spans.map((sp) => sp.traceID))).toEqual(new Set([traceId]));

      const byName = (n: string) => spans.find((sp) => sp.operationName === n) as JaegerSpan;
      const parentOf = (sp: JaegerSpan) => sp.references.find((r) => r.refType === "CHILD_OF")?.spanID;
      // The RPC and REST spans are children of the caller's span; outbound spans of their request's span.
      for (const server of ["/eproxy.v1.AuthService/StartCiba", SEND_ROUTE]) {
        expect(parentOf(byName(server))).toBe(callerSpanId);
      }
      expect(parentOf(byName("PSC ciba_start"))).toBe(byName("/eproxy.v1.AuthService/StartCiba").spanID);
      expect(parentOf(byName("token exchange insi"))).toBe(byName(SEND_ROUTE).spanID);
      expect(parentOf(byName("upstream insi"))).toBe(byName(SEND_ROUTE).spanID);
      // Session-store calls made while serving the relay are spans of its trace too.
      const storeSpans = spans.filter((sp) => sp.operationName.startsWith("sessions "));
      expect(storeSpans.map((sp) => sp.operationName)).toContain("sessions getSession");
      expect(storeSpans.some((sp) => parentOf(sp) === byName(SEND_ROUTE).spanID)).toBe(true);
      const tag = (sp: JaegerSpan, key: string) => sp.tags.find((t) => t.key === key)?.value;
      expect(tag(byName(SEND_ROUTE), "eproxy.request_id")).toBe(relayRequestId);
      expect(tag(byName(SEND_ROUTE), "eproxy.code")).toBe("ok");

      // traceparent went to PSC, to the authorization server, and (opted in) to the teleservice.
      expect(env.psc.stats.traceparents.some((t) => t.split("-")[1] === traceId)).toBe(true);
      const asParent = String(env.tele.stats.lastExchangeHeaders.traceparent ?? "").split("-");
      expect(asParent[1]).toBe(traceId);
      expect(asParent[2]).toBe(byName("token exchange insi").spanID);
      const teleParent = String(insiHeaders.traceparent ?? "").split("-");
      expect(teleParent[1]).toBe(traceId);
      expect(teleParent[2]).toBe(byName("upstream insi").spanID);
      expect(echoHeaders.traceparent).toBeUndefined();
      expect(echoHeaders["x-correlation-id"]).toEqual(expect.any(String));
    });

    it("writes an access line per request with request id, client id, code and duration", () => {
      const access = logLines.filter((l) => l.msg === "request");
      // StartCiba, WatchCiba, the relays to insi, echo and the teleservice that is down, unknown paths.
      expect(access.length).toBeGreaterThanOrEqual(6);
      expect(access.filter((l) => l.clientId === "lps-demo")).toHaveLength(5);
      for (const line of access) {
        const shown = JSON.stringify(line);
        expect(line.requestId, shown).toMatch(/^[\w.:-]{1,128}$/);
        expect(line.durationMs, shown).toEqual(expect.any(Number));
        expect(line.status, shown).toEqual(expect.any(Number));
        // Every request of an authenticated caller (the RPCs, the relays) names the client and its code.
        if (String(line.route).startsWith("/eproxy.v1.") || line.route === "/send/:service/*") {
          expect(line.clientId, shown).toBe("lps-demo");
          expect(line.code, shown).toEqual(expect.any(String));
        }
      }
      const relayLine = access.find((l) => l.requestId === relayRequestId);
      expect(relayLine, "access line of the relayed call").toMatchObject({
        clientId: "lps-demo",
        route: "/send/:service/*",
        protocol: "rest",
        code: "OK",
        teleservice: "insi",
      });
      const rpcCodes = access.filter((l) => String(l.route).startsWith("/eproxy.v1.")).map((l) => l.code);
      expect(rpcCodes).toEqual(["ok", "ok"]);
    });
  },
);
