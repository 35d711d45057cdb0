/**
 * Fault-injection suite: under a steady relay load, PSC, the teleservice's authorization server,
 * Redis, MongoDB and the teleservice fail one after the other — network faults through Toxiproxy
 * (latency, resets, stalls, a disabled link), HTTP faults through the simulators — and for each
 * fault the suite prints and asserts: calls that reached the failing peer, the relay success rate,
 * errors by code, traces lost, and the recovery time once the fault is cleared.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import http2 from "node:http2";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ACTIONS, insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, DOCTOR, NURSE, PHARMACIST, startAuthEnv } from "../support/auth-env.ts";
import { freePort } from "../support/cli.ts";
import { startFerret, startRedis, type TestServerProcess } from "../support/servers.ts";

const SOAP12 = `application/soap+xml; charset=utf-8; action="${ACTIONS.insiSearch}"`;
const TOXIPROXY = [
  path.join(homedir(), "go/bin/toxiproxy-server"),
  path.join(homedir(), "go/bin/server"),
  "/usr/local/bin/toxiproxy-server",
].find((p) => existsSync(p));
const redisBin = inject("redisBin");
const ferretBin = inject("ferretBin");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The Toxiproxy server and its HTTP API. */
class Toxiproxy {
  private proc?: ChildProcess;
  private api = "";

  async start(): Promise<void> {
    const port = await freePort();
    this.proc = spawn(TOXIPROXY as string, ["-host", "127.0.0.1", "-port", String(port)], {
      stdio: "ignore",
    });
    this.api = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 200; i++) {
      if (
        await fetch(`${this.api}/version`)
          .then((r) => r.ok)
          .catch(() => false)
      )
        return;
      await sleep(50);
    }
    throw new Error("toxiproxy did not start");
  }

  private async call(method: string, p: string, body?: unknown): Promise<void> {
    const res = await fetch(`${this.api}${p}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    if (!res.ok) throw new Error(`toxiproxy ${method} ${p}: ${res.status} ${await res.text()}`);
  }

  /** A TCP proxy listening on `listen`, to `upstreamPort`. */
  proxy(name: string, listen: number, upstreamPort: number): Promise<void> {
    return this.call("POST", "/proxies", {
      name,
      listen: `127.0.0.1:${listen}`,
      upstream: `127.0.0.1:${upstreamPort}`,
      enabled: true,
    });
  }

  toxic(proxy: string, type: string, attributes: Record<string, number>): Promise<void> {
    return this.call("POST", `/proxies/${proxy}/toxics`, {
      name: type,
      type,
      stream: "downstream",
      toxicity: 1,
      attributes,
    });
  }

  clear(proxy: string, type: string): Promise<void> {
    return this.call("DELETE", `/proxies/${proxy}/toxics/${type}`);
  }

  enable(proxy: string, enabled: boolean): Promise<void> {
    return this.call("POST", `/proxies/${proxy}`, { enabled });
  }

  stop(): void {
    this.proc?.kill();
  }
}

interface Result {
  at: number;
  phase: string;
  status: number;
  code: string;
}

/** Steady relay load: `workers` loops over HTTP/2, each relaying an INSi search in turn. */
class Load {
  readonly results: Result[] = [];
  phase = "warmup";
  private running = true;
  private loops: Promise<void>[] = [];
  private n = 0;

  private readonly env: AuthEnv;
  tokens: string[];

  constructor(env: AuthEnv, tokens: string[]) {
    this.env = env;
    this.tokens = tokens;
  }

  start(workers: number): void {
    for (let w = 0; w < workers; w++) this.loops.push(this.loop(w));
  }

  private async loop(w: number): Promise<void> {
    let session: http2.ClientHttp2Session | undefined;
    while (this.running) {
      if (!session || session.closed || session.destroyed) {
        session = http2.connect(this.env.url, { ca: this.env.ca });
        session.on("error", () => {});
      }
      const token = this.tokens[(w + this.n) % this.tokens.length] as string;
      // Counted in the phase it started in (its correlation id says the same).
      const phase = this.phase;
      const r = await this.relay(session, token, `${phase}.${++this.n}`);
      this.results.push({ at: Date.now(), phase, ...r });
      // About 10 relays per second per worker at most: steady, not a benchmark.
      await sleep(100);
    }
    session?.close();
  }

  relay(
    session: http2.ClientHttp2Session,
    token: string,
    correlationId: string,
    abortAfterMs?: number,
  ): Promise<{ status: number; code: string }> {
    return new Promise((resolve) => {
      let req: http2.ClientHttp2Stream;
      try {
        req = session.request({
          ":method": "POST",
          ":path": "/send/insi/rechercherInsAvecTraitsIdentite",
          "content-type": SOAP12,
          "x-eproxy-api-key": this.env.keys["lps-demo"],
          authorization: `Bearer ${token}`,
          "x-correlation-id": correlationId,
        });
      } catch {
        resolve({ status: 0, code: "CLIENT_CONNECTION" });
        return;
      }
      const timer = setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), 20_000);
      let status = 0;
      let code = "";
      req.on("response", (h) => {
        status = Number(h[":status"]);
        code = String(h["x-eproxy-error"] ?? (status === 200 ? "OK" : `HTTP_${status}`));
      });
      req.on("data", () => {});
      req.on("close", () => {
        clearTimeout(timer);
        resolve({ status, code: code || "NO_ANSWER" });
      });
      req.on("error", () => {});
      if (abortAfterMs !== undefined) {
        // The caller hangs up while its body is still on its way.
        req.write(insiSearchRequest("UNIQUE").slice(0, 200));
        setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), abortAfterMs);
      } else req.end(insiSearchRequest("UNIQUE"));
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

interface Report {
  fault: string;
  peerCalls: number | string;
  relays: number;
  successRate: number;
  errors: Record<string, number>;
  tracesLost: number;
  recoveryMs: number;
}

let env: AuthEnv;
let toxi: Toxiproxy;
let redis: TestServerProcess;
let mongo: TestServerProcess | undefined;
let load: Load;
const reports: Report[] = [];
const unhandled: unknown[] = [];
const warnings: string[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);
const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);

// CI (EPROXY_REQUIRE_SERVERS=1) installs Toxiproxy and Redis: there, a missing one is a failure, not a skip.
describe.runIf(process.env.EPROXY_REQUIRE_SERVERS === "1")("fault-injection prerequisites", () => {
  it("toxiproxy-server and redis-server are installed", () => {
    expect(TOXIPROXY, "toxiproxy-server (.ci/install-tools.sh toxiproxy-server)").toBeDefined();
    expect(redisBin, "redis-server").toBeTruthy();
  });
});

describe.skipIf(!TOXIPROXY || !redisBin)("fault injection under steady relay load", () => {
  beforeAll(async () => {
    process.on("unhandledRejection", onUnhandled);
    process.on("warning", onWarning);
    toxi = new Toxiproxy();
    await toxi.start();
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-chaos-"));
    redis = await startRedis(redisBin, path.join(dir, "redis"));
    if (ferretBin) mongo = await startFerret(ferretBin, path.join(dir, "ferret"));
    const [pscPort, asPort, telePort, redisPort, mongoPort] = await Promise.all(
      Array.from({ length: 5 }, () => freePort()),
    );
    await toxi.proxy("redis", redisPort as number, redis.port);
    if (mongo) await toxi.proxy("mongo", mongoPort as number, mongo.port);
    env = await startAuthEnv({
      // PSC access tokens of 40 s, refreshed in their last 30 s: refreshes happen all along.
      psc: { publicPort: pscPort, accessTokenTtlSeconds: 40, autoApproveMs: 100 },
      sessions: { refreshBeforeExpirySeconds: 30 },
      redisUrl: `redis://127.0.0.1:${redisPort}/0`,
      // The steady load is many relays on few sessions: not misuse here.
      extra: { alerts: { relaysPerSession: null } },
      ...(mongo ? { mongoUrl: `mongodb://127.0.0.1:${mongoPort}/` } : {}),
      teleservices: [
        {
          name: "insi",
          upstreamUrl: `https://localhost:${telePort}/insi`,
          headersTimeoutMs: 10_000,
          // API tokens of 60 s renewed in their last 50 s: renewals happen all along.
          tokenExchange: {
            endpoint: `https://localhost:${asPort}/as/token`,
            scope: "insi",
            refreshBeforeExpirySeconds: 50,
          },
        },
      ],
    });
    env.tele.settings.apiTokenTtlSeconds = 60;
    await toxi.proxy("psc", pscPort as number, env.psc.port);
    const tele = Number(new URL(env.tele.url).port);
    await toxi.proxy("as", asPort as number, tele);
    await toxi.proxy("tele", telePort as number, tele);
    const tokens = [];
    for (const id of [DOCTOR, NURSE, PHARMACIST]) tokens.push(await cibaLogin(env.auth(), id));
    load = new Load(env, tokens);
    load.start(6);
    await sleep(2_000);
  }, 90_000);

  afterAll(async () => {
    await load?.stop();
    await env?.close();
    await redis?.stop();
    await mongo?.stop();
    toxi?.stop();
    process.off("unhandledRejection", onUnhandled);
    process.off("warning", onWarning);
    const line = (r: Report) =>
      `${r.fault.padEnd(24)} ${String(r.peerCalls).padStart(10)} ${String(r.relays).padStart(6)} ${`${(r.successRate * 100).toFixed(1)}%`.padStart(8)} ${String(r.tracesLost).padStart(6)} ${`${(r.recoveryMs / 1000).toFixed(1)} s`.padStart(9)}  ${Object.entries(
        r.errors,
      )
        .map(([k, v]) => `${k}=${v}`)
        .join(" ")}`;
    process.stdout.write(
      `\n=== fault injection (eProxy under steady relay load) ===\n${"fault".padEnd(24)} ${"peer calls".padStart(10)} ${"relays".padStart(6)} ${"success".padStart(8)} ${"lost".padStart(6)} ${"recovery".padStart(9)}  errors by code\n${reports.map(line).join("\n")}\nunhandled rejections: ${unhandled.length}; process warnings: ${warnings.length ? warnings.join("; ") : "none"}\n\n`,
    );
  });

  /**
   * Runs one fault: `inject`, `faultMs` of load, `clear`, then waits for the first successful relay
   * (the recovery time). Traces are counted by correlation id once the writer has flushed.
   */
  async function fault(
    name: string,
    o: {
      inject(): Promise<void>;
      clear(): Promise<void>;
      peerCalls?: () => number;
      faultMs?: number;
      afterClear?: () => Promise<void>;
    },
  ): Promise<Report> {
    const before = o.peerCalls?.();
    load.phase = name.replace(/\W+/g, "-");
    const phaseTag = load.phase;
    await o.inject();
    await sleep(o.faultMs ?? 6_000);
    const calls = o.peerCalls ? o.peerCalls() - (before as number) : "-";
    await o.clear();
    const cleared = Date.now();
    await o.afterClear?.();
    let recoveryMs = -1;
    for (let i = 0; i < 300 && recoveryMs < 0; i++) {
      const ok = load.results.find((r) => r.phase === phaseTag && r.at > cleared && r.status === 200);
      if (ok) recoveryMs = ok.at - cleared;
      else await sleep(100);
    }
    await sleep(500);
    load.phase = `${phaseTag}-after`;
    const mine = load.results.filter((r) => r.phase === phaseTag);
    const errors: Record<string, number> = {};
    for (const r of mine) if (r.status !== 200) errors[r.code] = (errors[r.code] ?? 0) + 1;
    await env.deps.traces.flush();
    const sends = await env.deps.traceStore.query({
      start: Date.now() - 10 * 60_000,
      end: Date.now() + 60_000,
      type: "SEND",
      limit: 100_000,
    });
    const traced = new Set(sends.filter((t) => t.outcome === "OK").map((t) => t.correlationId));
    const okIds = mine.filter((r) => r.status === 200).length;
    const tracedOk = [...traced].filter((c) => c?.startsWith(`${phaseTag}.`)).length;
    const report: Report = {
      fault: name,
      peerCalls: calls,
      relays: mine.length,
      successRate: mine.length ? mine.filter((r) => r.status === 200).length / mine.length : 0,
      errors,
      tracesLost: Math.max(0, okIds - tracedOk),
      recoveryMs,
    };
    reports.push(report);
    expect(recoveryMs, `${name}: recovery`).toBeGreaterThanOrEqual(0);
    expect(recoveryMs, `${name}: recovery within seconds`).toBeLessThan(15_000);
    return report;
  }

  it("PSC token endpoint 503 (Retry-After 1): valid tokens keep relays going, PSC gets a bounded number of calls", async () => {
    const r = await fault("PSC 503", {
      inject: async () => {
        env.psc.faults.retryAfterSeconds = 1;
        env.psc.faults.refreshUnavailable = true;
      },
      clear: async () => {
        env.psc.faults.refreshUnavailable = false;
      },
      peerCalls: () => env.psc.stats.refreshes,
      faultMs: 8_000,
    });
    expect(r.successRate).toBe(1);
    // Breaker: onset (≤ 4 in flight) plus about one probe per open period, whatever the load.
    expect(r.peerCalls as number).toBeLessThanOrEqual(12);
    expect(r.tracesLost).toBe(0);
  });

  it("PSC slow (3 s of latency): relays do not wait for the refresh beyond 1.5 s, none fails", async () => {
    const r = await fault("PSC slow 3s", {
      inject: () => toxi.toxic("psc", "latency", { latency: 3_000 }),
      clear: () => toxi.clear("psc", "latency"),
      peerCalls: () => env.psc.stats.refreshes,
    });
    expect(r.successRate).toBe(1);
    expect(r.tracesLost).toBe(0);
  });

  it("PSC connections reset (TCP RST): relays keep succeeding on valid tokens", async () => {
    const r = await fault("PSC reset", {
      inject: () => toxi.toxic("psc", "reset_peer", { timeout: 0 }),
      clear: () => toxi.clear("psc", "reset_peer"),
    });
    expect(r.successRate).toBe(1);
    expect(r.tracesLost).toBe(0);
  });

  it("authorization server 503: cached API tokens keep relays going, the AS gets a bounded number of calls", async () => {
    const r = await fault("AS 503", {
      inject: async () => {
        env.tele.faults.asUnavailable = true;
      },
      clear: async () => {
        env.tele.faults.asUnavailable = false;
      },
      peerCalls: () => env.tele.stats.exchangeRequests ?? 0,
      faultMs: 8_000,
    });
    expect(r.successRate).toBe(1);
    expect(r.peerCalls as number).toBeLessThanOrEqual(12);
    expect(r.tracesLost).toBe(0);
  });

  it("teleservice slow (1.5 s of latency): relays succeed, slower", async () => {
    const r = await fault("teleservice slow 1.5s", {
      inject: () => toxi.toxic("tele", "latency", { latency: 1_500 }),
      clear: () => toxi.clear("tele", "latency"),
      peerCalls: () => env.tele.stats.requests,
    });
    expect(r.successRate).toBe(1);
    expect(r.tracesLost).toBe(0);
  });

  it("teleservice connections reset: the documented upstream errors, recovery at once", async () => {
    const r = await fault("teleservice reset", {
      inject: () => toxi.toxic("tele", "reset_peer", { timeout: 0 }),
      clear: () => toxi.clear("tele", "reset_peer"),
      faultMs: 4_000,
    });
    for (const code of Object.keys(r.errors)) {
      expect(["UPSTREAM_UNAVAILABLE", "UPSTREAM_BAD_RESPONSE", "UPSTREAM_TIMEOUT"]).toContain(code);
    }
    expect(r.tracesLost).toBe(0);
  });

  it.skipIf(!ferretBin)("MongoDB down: relays unaffected, traces spooled and none lost", async () => {
    const r = await fault("MongoDB down", {
      inject: () => toxi.enable("mongo", false),
      clear: () => toxi.enable("mongo", true),
      afterClear: async () => {
        // The spool is replayed once MongoDB answers.
        for (let i = 0; i < 100 && env.deps.traces.stats().spooledBytes > 0; i++) {
          await env.deps.traces.flush().catch(() => {});
          await sleep(200);
        }
      },
    });
    expect(r.successRate).toBe(1);
    expect(r.tracesLost).toBe(0);
  });

  it("clients hanging up mid-request: traced ABORTED, never as an upstream failure", async () => {
    const session = http2.connect(env.url, { ca: env.ca });
    session.on("error", () => {});
    const started = Date.now();
    try {
      await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          load.relay(session, load.tokens[i % load.tokens.length] as string, `abort.${i}`, 30),
        ),
      );
    } finally {
      session.close();
    }
    await sleep(500);
    await env.deps.traces.flush();
    const traces = await env.deps.traceStore.query({
      start: started,
      end: Date.now() + 1_000,
      limit: 10_000,
    });
    const blamed = traces.filter(
      (t) => (t.type === "REJECTED" || t.type === "FAILED") && String(t.outcome).startsWith("UPSTREAM"),
    );
    expect(blamed).toEqual([]);
    const aborted = traces.filter((t) => t.type === "SEND" && t.correlationId?.startsWith("abort."));
    // Requests cut before eProxy read the session leave no SEND; every other one says ABORTED.
    expect(aborted.length).toBeGreaterThan(0);
    for (const t of aborted) expect(t.outcome).toBe("ABORTED");
    reports.push({
      fault: "client aborts (30)",
      peerCalls: "-",
      relays: 30,
      successRate: 0,
      errors: { SEND_ABORTED: aborted.length, UPSTREAM_BLAMED: blamed.length },
      tracesLost: 0,
      recoveryMs: 0,
    });
  });

  it("Redis stalls for 4 s: STORE_UNAVAILABLE meanwhile, no listener leak, recovery within seconds", async () => {
    const r = await fault("Redis stall 4s", {
      inject: () => toxi.toxic("redis", "timeout", { timeout: 0 }),
      clear: () => toxi.clear("redis", "timeout"),
      faultMs: 4_000,
    });
    for (const code of Object.keys(r.errors)) expect(["STORE_UNAVAILABLE", "UNAVAILABLE"]).toContain(code);
    expect(warnings.filter((w) => w.includes("MaxListeners"))).toEqual([]);
  });

  it("Redis restarts empty: lost sessions answer REAUTHENTICATION_REQUIRED, a new login works", async () => {
    const r = await fault("Redis restart (empty)", {
      inject: () => redis.stop(),
      clear: () => redis.restart(),
      faultMs: 3_000,
      afterClear: async () => {
        // Callers act on REAUTHENTICATION_REQUIRED: sign in again.
        for (let i = 0; i < 100; i++) {
          if ((await env.http("GET", "/readyz")).status === 200) break;
          await sleep(100);
        }
        const fresh = [];
        for (const id of [DOCTOR, NURSE, PHARMACIST]) fresh.push(await cibaLogin(env.auth(), id));
        load.tokens = fresh;
      },
    });
    expect(r.errors.REAUTHENTICATION_REQUIRED ?? 0).toBeGreaterThan(0);
    expect(r.errors.SESSION_INVALID ?? 0).toBe(0);
    for (const code of Object.keys(r.errors)) {
      expect(["STORE_UNAVAILABLE", "REAUTHENTICATION_REQUIRED", "UNAVAILABLE"]).toContain(code);
    }
  });

  it("no unhandled rejection and no process warning in the whole run", () => {
    expect(unhandled).toEqual([]);
    expect(warnings).toEqual([]);
  });
});
