import { randomBytes } from "node:crypto";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { PscGateway, PscTokens } from "../../src/auth/psc-gateway.ts";
import { createSessions, type Sessions } from "../../src/auth/sessions.ts";
import type { AuthStore } from "../../src/auth/store.ts";
import type { ClientConfig, Config } from "../../src/config.ts";
import { EproxyError } from "../../src/errors.ts";
import { createMemoryStore } from "../../src/infra/memory-store.ts";
import type { TraceInput } from "../../src/trace/traces.ts";

const log = pino({ level: "silent" });
const config = {
  sessions: { idleSeconds: 1800, absoluteSeconds: 4 * 3600, refreshBeforeExpirySeconds: 20 },
} as unknown as Config;
const client = { id: "lps-demo" } as ClientConfig;
const tokenKeys = { activeKeyId: "k1", keys: new Map([["k1", randomBytes(32)]]) };

/** A PSC whose token endpoint can be switched down (503 with Retry-After) and counts its calls. */
function fakePsc() {
  const state = { down: false, retryAfterSeconds: undefined as number | undefined, refreshes: 0 };
  const tokens = (): PscTokens => ({
    accessToken: `at-${Math.random()}`,
    refreshToken: "rt",
    accessExpiresAt: Date.now() + 120_000,
  });
  const psc = {
    async userinfo() {
      return { SubjectNameID: "899700218896" };
    },
    async refresh() {
      state.refreshes++;
      if (state.down) {
        throw new EproxyError("PSC_UNAVAILABLE", "Pro Santé Connect unavailable (refresh)", {
          ...(state.retryAfterSeconds ? { retryAfterSeconds: state.retryAfterSeconds } : {}),
        });
      }
      return tokens();
    },
  } as unknown as PscGateway;
  return { psc, state, tokens };
}

function build(store: AuthStore, psc: PscGateway, traces: TraceInput[]): Sessions {
  return createSessions({
    config,
    clients: { get: () => client },
    store,
    psc,
    log,
    traces: { record: (e) => traces.push(e) },
    tokenKeys,
  });
}

describe("PSC refresh through an outage", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date("2026-03-02T08:00:00Z") });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("keeps using a still-valid access token, with bounded calls to PSC and one failure trace", async () => {
    const store = createMemoryStore();
    const { psc, state, tokens } = fakePsc();
    const traces: TraceInput[] = [];
    const sessions = build(store, psc, traces);
    const bearers: string[] = [];
    for (let i = 0; i < 20; i++) {
      const v = await sessions.create(client, tokens(), { sub: "s" });
      bearers.push(v.token as string);
    }
    // 105 s later every access token has 15 s left (inside the 20 s refresh margin) and PSC is down.
    vi.advanceTimersByTime(105_000);
    state.down = true;
    state.retryAfterSeconds = 1;
    let ok = 0;
    // 5 s of traffic at 100 calls/s over the 20 sessions.
    for (let tick = 0; tick < 50; tick++) {
      const got = await Promise.all(
        Array.from({ length: 10 }, (_, i) => sessions.fresh(bearers[(tick * 10 + i) % 20], client.id)),
      );
      ok += got.filter((r) => r.psc.accessExpiresAt > Date.now()).length;
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(ok).toBe(500);
    // Onset (at most 4 calls in flight; PSC gives Retry-After) plus about one probe per open period.
    expect(state.refreshes).toBeGreaterThan(0);
    expect(state.refreshes).toBeLessThanOrEqual(10);
    expect(traces.filter((t) => t.type === "REFRESH_FAILURE")).toHaveLength(1);

    // PSC is back: the next probe (within the current open period, at most 8 s here) succeeds and
    // refreshes resume.
    state.down = false;
    const back = Date.now();
    let recovered = 0;
    for (let i = 0; i < 40 && !recovered; i++) {
      await vi.advanceTimersByTimeAsync(500);
      const r = await sessions.fresh(bearers[0], client.id).catch(() => undefined);
      if (r && r.psc.accessExpiresAt - Date.now() > 100_000) recovered = Date.now() - back;
    }
    expect(recovered).toBeGreaterThan(0);
    expect(recovered).toBeLessThanOrEqual(10_000);
  });

  it("fails only a call whose access token expired, as PSC_UNAVAILABLE with Retry-After", async () => {
    const store = createMemoryStore();
    const { psc, state, tokens } = fakePsc();
    const sessions = build(store, psc, []);
    const v = await sessions.create(client, tokens(), { sub: "s" });
    vi.advanceTimersByTime(121_000);
    state.down = true;
    state.retryAfterSeconds = 7;
    const first = await sessions.fresh(v.token, client.id).catch((e: unknown) => e);
    expect(first).toMatchObject({ code: "PSC_UNAVAILABLE" });
    // The breaker is open: the next callers are told when to come back, and PSC is not called.
    const calls = state.refreshes;
    const second = (await sessions.fresh(v.token, client.id).catch((e: unknown) => e)) as EproxyError;
    expect(second.code).toBe("PSC_UNAVAILABLE");
    expect(second.retryAfterSeconds).toBeGreaterThanOrEqual(6);
    expect(state.refreshes).toBe(calls);
  });

  it("honours Retry-After before trying PSC again", async () => {
    const store = createMemoryStore();
    const { psc, state, tokens } = fakePsc();
    const sessions = build(store, psc, []);
    const v = await sessions.create(client, tokens(), { sub: "s" });
    vi.advanceTimersByTime(121_000);
    state.down = true;
    state.retryAfterSeconds = 10;
    await sessions.fresh(v.token, client.id).catch(() => {});
    const calls = state.refreshes;
    state.down = false;
    for (let i = 0; i < 9; i++) {
      await vi.advanceTimersByTimeAsync(1_000);
      await sessions.fresh(v.token, client.id).catch(() => {});
    }
    expect(state.refreshes).toBe(calls);
    await vi.advanceTimersByTimeAsync(1_500);
    await sessions.fresh(v.token, client.id);
    expect(state.refreshes).toBe(calls + 1);
  });

  it("shares the open breaker between replicas through the store", async () => {
    const store = createMemoryStore();
    const { psc, state, tokens } = fakePsc();
    const a = build(store, psc, []);
    const b = build(store, psc, []);
    const va = await a.create(client, tokens(), { sub: "s" });
    const vb = await b.create(client, tokens(), { sub: "s" });
    vi.advanceTimersByTime(121_000);
    state.down = true;
    state.retryAfterSeconds = 30;
    await a.fresh(va.token, client.id).catch(() => {});
    const calls = state.refreshes;
    const e = (await b.fresh(vb.token, client.id).catch((x: unknown) => x)) as EproxyError;
    expect(e.code).toBe("PSC_UNAVAILABLE");
    expect(state.refreshes).toBe(calls);
  });
});

describe("session tokens", () => {
  it("refuses a forged token without reading the store", async () => {
    const store = createMemoryStore();
    const spy = vi.spyOn(store, "getSession");
    const used = vi.spyOn(store, "useSession");
    const { psc, tokens } = fakePsc();
    const sessions = build(store, psc, []);
    const v = await sessions.create(client, tokens(), { sub: "s" });
    const forged = `${(v.token as string).slice(0, -4)}AAAA`;
    for (const t of [forged, "eps_abc", `eps_${randomBytes(32).toString("base64url")}`]) {
      await expect(sessions.resolve(t, client.id)).rejects.toMatchObject({ code: "SESSION_INVALID" });
    }
    expect(spy).not.toHaveBeenCalled();
    expect(used).not.toHaveBeenCalled();
    await expect(sessions.resolve(v.token, client.id)).resolves.toMatchObject({ clientId: client.id });
  });

  it("tells a session lost with the store (re-authenticate) from one that ended", async () => {
    vi.useFakeTimers({ now: new Date("2026-03-02T08:00:00Z") });
    try {
      const { psc, tokens } = fakePsc();
      const before = build(createMemoryStore(), psc, []);
      const lost = await before.create(client, tokens(), { sub: "s" });
      vi.advanceTimersByTime(5_000);
      // The store restarts empty (Redis without persistence); same keys.
      const store = createMemoryStore();
      const after = build(store, psc, []);
      await expect(after.resolve(lost.token, client.id)).rejects.toMatchObject({
        code: "REAUTHENTICATION_REQUIRED",
        message: expect.stringMatching(/lost/),
      });
      // A session that ended (logout) in the current store is just invalid.
      const ended = await after.create(client, tokens(), { sub: "s" });
      vi.advanceTimersByTime(2_000);
      await store.deleteSession((await after.resolve(ended.token, client.id)).id);
      await expect(after.resolve(ended.token, client.id)).rejects.toMatchObject({ code: "SESSION_INVALID" });
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("session policy", () => {
  it("a new login keeps the professional's other sessions with the same client", async () => {
    const store = createMemoryStore();
    const { psc, tokens } = fakePsc();
    const sessions = build(store, psc, []);
    const first = await sessions.create(client, tokens(), { sub: "s" });
    const second = await sessions.create(client, tokens(), { sub: "s" });
    await expect(sessions.resolve(first.token, client.id)).resolves.toBeTruthy();
    await expect(sessions.resolve(second.token, client.id)).resolves.toBeTruthy();
    // CIBA's reuse points at the newest.
    expect((await sessions.findLive(client.id, "899700218896"))?.id).toBe(second.sessionId);
  });
});
