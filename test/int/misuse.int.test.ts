/**
 * The misuse guard's relayed-calls threshold when the count is taken with the session lookup
 * (`Sessions.freshCounted` → `AuthStore.useSessionCounted`): one store operation per call, one
 * count shared by replicas of one Redis.
 */
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { afterEach, describe, expect, inject, it } from "vitest";
import { createMisuseGuard, type MisuseGuard } from "../../src/auth/misuse.ts";
import type { PscGateway } from "../../src/auth/psc-gateway.ts";
import { createSessions, hashToken, type Sessions } from "../../src/auth/sessions.ts";
import type { AuthStore } from "../../src/auth/store.ts";
import type { ClientConfig, Config } from "../../src/config.ts";
import { EproxyError } from "../../src/errors.ts";
import { createKeyRing } from "../../src/infra/key-ring.ts";
import { createRedisStore } from "../../src/infra/redis-store.ts";
import type { TraceInput } from "../../src/trace/traces.ts";

const redisUrl = inject("redisUrl");
const log = pino({ level: "silent" });
const client = { id: "lps-demo" } as ClientConfig;
const tokenKeys = { activeKeyId: "k1", keys: new Map([["k1", randomBytes(32)]]) };
const ring = createKeyRing(new Map([["k1", randomBytes(32)]]), "k1");
const psc = {
  async userinfo() {
    return { SubjectNameID: "899700218896" };
  },
} as unknown as PscGateway;

function configWith(relaysPerSession: { max: number; windowSeconds: number; block: boolean } | null) {
  return {
    sessions: { idleSeconds: 1800, absoluteSeconds: 4 * 3600, refreshBeforeExpirySeconds: 20 },
    alerts: { cibaFailures: null, relaysPerSession },
  } as unknown as Config;
}

interface Replica {
  store: AuthStore;
  sessions: Sessions;
  misuse: MisuseGuard;
}

describe.skipIf(!redisUrl)("relayed calls counted with the session lookup, on replicas of one Redis", () => {
  let stores: AuthStore[] = [];
  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    stores = [];
  });

  /** Two replicas (each its own Redis connection, opened-record cache and guard) on one key prefix. */
  function replicas(config: Config, traces: TraceInput[]): Replica[] {
    const prefix = `mis${randomBytes(3).toString("hex")}:`;
    return [0, 1].map(() => {
      const store = createRedisStore(
        { kind: "redis", url: redisUrl, keyPrefix: prefix, commandTimeoutMs: 1_000 },
        ring,
        log,
      );
      stores.push(store);
      const record = (e: TraceInput) => traces.push(e);
      return {
        store,
        sessions: createSessions({ config, clients: { get: () => client }, store, psc, log, tokenKeys }),
        misuse: createMisuseGuard({ config, store, traces: { record }, log }),
      };
    });
  }

  /** One relayed call as the relay makes it: lookup and count, then the guard. */
  async function relay(r: Replica, token: string): Promise<string> {
    try {
      const { rec, uses } = await r.sessions.freshCounted(token, client.id, r.misuse.relayWindowMs);
      await r.misuse.relayed({ id: rec.id, nationalId: rec.professional.nationalId }, client.id, uses);
      return "OK";
    } catch (err) {
      if (err instanceof EproxyError) return err.code;
      throw err;
    }
  }

  it("calls split between two replicas count against one limit, with one alert", async () => {
    const traces: TraceInput[] = [];
    const [a, b] = replicas(configWith({ max: 3, windowSeconds: 60, block: true }), traces) as [
      Replica,
      Replica,
    ];
    const tokens = () => ({ accessToken: "at", refreshToken: "rt", accessExpiresAt: Date.now() + 600_000 });
    const token = (await a.sessions.create(client, tokens(), { sub: "s" })).token as string;
    const other = (await b.sessions.create(client, tokens(), { sub: "s" })).token as string;
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) outcomes.push(await relay(i % 2 ? b : a, token));
    expect(outcomes).toEqual([
      "OK",
      "OK",
      "OK",
      "TOO_MANY_REQUESTS",
      "TOO_MANY_REQUESTS",
      "TOO_MANY_REQUESTS",
    ]);
    const alerts = traces.filter((t) => t.type === "ALERT");
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.outcome).toMatch(/^RELAY_RATE: more than 3 in 60 s \(blocked\)/);
    const refused = await b.sessions
      .freshCounted(token, client.id, b.misuse.relayWindowMs)
      .then(({ rec, uses }) => b.misuse.relayed({ id: rec.id, nationalId: "x" }, client.id, uses))
      .catch((e: unknown) => e);
    expect((refused as EproxyError).retryAfterSeconds).toBeGreaterThan(30);
    // Another session of the same professional has its own count.
    expect(await relay(a, other)).toBe("OK");
    // A logout on one replica refuses the session on the other at once (not counted any more).
    expect(await relay(b, other)).toBe("OK");
    await a.store.deleteSession(hashToken(other));
    expect(await relay(b, other)).toBe("SESSION_INVALID");
  });

  it("counts nothing without a threshold", async () => {
    const traces: TraceInput[] = [];
    const [a] = replicas(configWith(null), traces) as [Replica, Replica];
    expect(a.misuse.relayWindowMs).toBeUndefined();
    const token = (
      await a.sessions.create(
        client,
        { accessToken: "at", refreshToken: "rt", accessExpiresAt: Date.now() + 600_000 },
        { sub: "s" },
      )
    ).token as string;
    const counted = await a.sessions.freshCounted(token, client.id, undefined);
    expect(counted.uses).toBeUndefined();
    for (let i = 0; i < 5; i++) expect(await relay(a, token)).toBe("OK");
    expect(traces).toEqual([]);
  });
});
