import { randomBytes } from "node:crypto";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { PscGateway } from "../../src/auth/psc-gateway.ts";
import { createSessions } from "../../src/auth/sessions.ts";
import type { ClientConfig, Config, TeleserviceConfig } from "../../src/config.ts";
import { EproxyError } from "../../src/errors.ts";
import { createMemoryStore } from "../../src/infra/memory-store.ts";
import { createApiTokens } from "../../src/relay/api-tokens.ts";
import type { TokenExchange } from "../../src/relay/ports.ts";
import type { TraceInput } from "../../src/trace/traces.ts";

const log = pino({ level: "silent" });
const config = {
  sessions: { idleSeconds: 1800, absoluteSeconds: 4 * 3600, refreshBeforeExpirySeconds: 20 },
} as unknown as Config;
const client = { id: "lps-demo" } as ClientConfig;
const dmp = { name: "dmp", tokenExchange: { refreshBeforeExpirySeconds: 60 } } as TeleserviceConfig;

function setup() {
  const store = createMemoryStore();
  const psc = {
    async userinfo() {
      return { SubjectNameID: "899700218896" };
    },
    async refresh() {
      return {
        accessToken: `at-${Math.random()}`,
        refreshToken: "rt",
        accessExpiresAt: Date.now() + 120_000,
      };
    },
  } as unknown as PscGateway;
  const traces: TraceInput[] = [];
  const sessions = createSessions({
    config,
    clients: { get: () => client },
    store,
    psc,
    log,
    tokenKeys: { activeKeyId: "k", keys: new Map([["k", randomBytes(32)]]) },
  });
  const as = { down: false, calls: 0, ttlSeconds: 600 };
  const tokenExchange: TokenExchange = {
    async exchange() {
      as.calls++;
      if (as.down) {
        throw new EproxyError(
          "TOKEN_EXCHANGE_UNAVAILABLE",
          "token exchange unavailable: authorization server of dmp (auth.example) answered HTTP 503",
          { retryAfterSeconds: 1 },
        );
      }
      return { accessToken: `api-${as.calls}`, expiresInSeconds: as.ttlSeconds };
    },
  };
  const apiTokens = createApiTokens({
    sessions,
    store,
    tokenExchange,
    traces: { record: (e) => traces.push(e) },
    log,
  });
  return { store, sessions, apiTokens, as, traces };
}

describe("API tokens through an authorization server outage", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date("2026-03-02T08:00:00Z") });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("keeps using the cached API token until it expires, with bounded calls and one failure trace", async () => {
    const { sessions, apiTokens, as, traces, store } = setup();
    const v = await sessions.create(
      client,
      { accessToken: "at", refreshToken: "rt", accessExpiresAt: Date.now() + 120_000 },
      { sub: "s" },
    );
    const first = await apiTokens.get(await sessions.resolve(v.token, client.id), dmp, "tp");
    expect(first).toBe("api-1");
    // 10 minutes of life, renewal 60 s before expiry: at 9 min 30 s the AS goes down.
    vi.advanceTimersByTime(570_000);
    as.down = true;
    const callsBefore = as.calls;
    const got: string[] = [];
    for (let i = 0; i < 100; i++) {
      const rec = (await store.getSession((await sessions.resolve(v.token, client.id)).id)) as never;
      got.push((await apiTokens.get(rec, dmp, "tp")) as string);
      await vi.advanceTimersByTimeAsync(50);
    }
    expect(new Set(got)).toEqual(new Set(["api-1"]));
    expect(as.calls - callsBefore).toBeGreaterThan(0);
    expect(as.calls - callsBefore).toBeLessThanOrEqual(8);
    expect(traces.filter((t) => t.type === "EXCHANGE" && t.outcome !== "OK")).toHaveLength(1);
  });

  it("without a usable cached token: TOKEN_EXCHANGE_UNAVAILABLE with Retry-After, then no calls while open", async () => {
    const { sessions, apiTokens, as } = setup();
    const v = await sessions.create(
      client,
      { accessToken: "at", refreshToken: "rt", accessExpiresAt: Date.now() + 120_000 },
      { sub: "s" },
    );
    as.down = true;
    const rec = await sessions.resolve(v.token, client.id);
    const e1 = (await apiTokens.get(rec, dmp, "tp").catch((e: unknown) => e)) as EproxyError;
    expect(e1.code).toBe("TOKEN_EXCHANGE_UNAVAILABLE");
    expect(e1.message).toMatch(/authorization server of dmp/);
    const calls = as.calls;
    for (let i = 0; i < 20; i++) {
      const e = (await apiTokens.get(rec, dmp, "tp").catch((x: unknown) => x)) as EproxyError;
      expect(e.code).toBe("TOKEN_EXCHANGE_UNAVAILABLE");
      expect(e.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    }
    expect(as.calls).toBe(calls);
    as.down = false;
    await vi.advanceTimersByTimeAsync(1_500);
    expect(await apiTokens.get(rec, dmp, "tp")).toMatch(/^api-/);
  });
});
