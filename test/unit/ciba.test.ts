import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Ciba, type CibaView, createCiba } from "../../src/auth/ciba.ts";
import type { CibaClock } from "../../src/auth/ciba-store.ts";
import type { MisuseGuard } from "../../src/auth/misuse.ts";
import type { CibaPollOutcome, CibaStartParams } from "../../src/auth/psc-gateway.ts";
import type { SessionView } from "../../src/auth/sessions.ts";
import type { AuthStore, Lease } from "../../src/auth/store.ts";
import type { ClientConfig, Config } from "../../src/config.ts";
import { EproxyError } from "../../src/errors.ts";
import { createMemoryStore } from "../../src/infra/memory-store.ts";

const NURSE = "899700218896";
const config = { psc: { acrValues: "eidas1", scope: "openid scope_all", timeoutMs: 5_000 } } as Config;
const client = { id: "lps-demo", maxPendingCiba: 20 } as ClientConfig;
const log = pino({ level: "silent" });

/** A PSC that answers polls from a script (pending when the script is empty). */
function fakePsc(opts: { expiresInSeconds?: number; intervalSeconds?: number; startMs?: number } = {}) {
  const pushes: Array<{ clientId: string; params: CibaStartParams; authReqId: string }> = [];
  const polls: Array<{ authReqId: string; at: number }> = [];
  const script = new Map<string, CibaPollOutcome[]>();
  return {
    pushes,
    polls,
    /** Times of the polls of the only request, from its push. */
    pollTimes(t0: number) {
      return polls.map((p) => p.at - t0);
    },
    answer(authReqId: string, ...outcomes: CibaPollOutcome[]) {
      script.set(authReqId, [...(script.get(authReqId) ?? []), ...outcomes]);
    },
    async startCiba(clientId: string, params: CibaStartParams) {
      // PSC takes a while to answer: concurrent starts overlap.
      if (opts.startMs) await new Promise((r) => setTimeout(r, opts.startMs));
      const authReqId = `psc-${pushes.length + 1}`;
      pushes.push({ clientId, params, authReqId });
      return {
        authReqId,
        expiresInSeconds: opts.expiresInSeconds ?? 120,
        intervalSeconds: opts.intervalSeconds ?? 5,
      };
    },
    async pollCiba(_clientId: string, authReqId: string): Promise<CibaPollOutcome> {
      polls.push({ authReqId, at: Date.now() });
      return script.get(authReqId)?.shift() ?? { kind: "pending" };
    },
  };
}

const approved: CibaPollOutcome = {
  kind: "approved",
  tokens: { accessToken: "at", accessExpiresAt: Date.now() + 120_000 },
  claims: { sub: NURSE, acr: "eidas1" },
};

function fakeSessions() {
  let n = 0;
  return {
    created: 0,
    async create(c: ClientConfig): Promise<SessionView> {
      this.created++;
      n++;
      return {
        token: `eps_token${n}`,
        sessionId: `s${n}`,
        proxySessionId: `p${n}`,
        clientId: c.id,
        professional: {
          nationalId: NURSE,
          givenName: "C",
          familyName: "S",
          exercises: [],
          authMode: "MOBILE",
        },
        acr: "eidas1",
        expiresAt: Date.now() + 3_600_000,
        idleExpiresAt: Date.now() + 1_800_000,
        reused: false,
      };
    },
    async findLive() {
      return undefined;
    },
    async view(): Promise<SessionView> {
      throw new Error("not used");
    },
  };
}

/** The memory store, counting calls and keeping the leases it grants (to make one expire early). */
function spyStore() {
  const store = createMemoryStore();
  const calls: string[] = [];
  const leases = new Map<string, Lease>();
  const spied: AuthStore = {
    ...store,
    async getTransient(kind, key) {
      calls.push(`get:${kind}`);
      return store.getTransient(kind, key);
    },
    async tryLease(name, ttlMs) {
      calls.push(`lease:${name.split(":")[0]}`);
      const l = await store.tryLease(name, ttlMs);
      if (l) leases.set(name, l);
      return l;
    },
  };
  return { store: spied, calls, leases };
}

/** A clock that stops firing when its replica "crashes" (no more polls, no lease renewals). */
function crashableClock() {
  let crashed = false;
  const clock: CibaClock = {
    now: () => Date.now(),
    setTimeout: (fn, ms) =>
      setTimeout(() => {
        if (!crashed) fn();
      }, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  };
  return { clock, crash: () => (crashed = true) };
}

/** Runs a watch in the background. */
function watching(it: AsyncGenerator<CibaView>) {
  const seen: CibaView[] = [];
  const ended = (async () => {
    for await (const v of it) seen.push(v);
  })().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { seen, ended, statuses: () => seen.map((v) => v.status) };
}

let replicas: Ciba[] = [];
function replica(
  deps: {
    store: AuthStore;
    psc: ReturnType<typeof fakePsc>;
    sessions?: ReturnType<typeof fakeSessions>;
    misuse?: MisuseGuard;
    traces?: { record: (e: any) => void };
    clock?: CibaClock;
  },
  name = "replica",
): Ciba {
  const c = createCiba({
    config,
    clients: { get: (id: string) => (id === client.id ? client : undefined) },
    psc: deps.psc,
    sessions: deps.sessions ?? fakeSessions(),
    store: deps.store,
    log: log.child({ name }),
    ...(deps.misuse ? { misuse: deps.misuse } : {}),
    ...(deps.traces ? { traces: deps.traces } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
  });
  replicas.push(c);
  return c;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  replicas = [];
});
afterEach(async () => {
  for (const r of replicas) await r.close();
  vi.useRealTimers();
});

const tick = (ms: number) => vi.advanceTimersByTimeAsync(ms);

/** Two replicas sharing a spied memory store and one PSC. */
function twoReplicas(psc = fakePsc()) {
  const spy = spyStore();
  return {
    psc,
    ...spy,
    a: replica({ store: spy.store, psc }, "a"),
    b: replica({ store: spy.store, psc }, "b"),
  };
}

/** A request polled by replica a and watched from replica b; store reads counted from then on. */
async function watchedFromB() {
  const r = twoReplicas();
  const req = await started(r.a);
  const w = watching(r.b.watch(client.id, req.authReqId));
  await tick(1);
  r.calls.length = 0;
  return { ...r, req, w };
}

async function started(c: Ciba) {
  const r = await c.start(client, { nationalId: NURSE, bindingMessage: "42" });
  if (!("request" in r)) throw new Error("expected a request");
  return r.request;
}

describe("CIBA service on fake time", () => {
  it("polls at PSC's interval, and 5 s further apart after slow_down", async () => {
    const psc = fakePsc();
    const a = replica({ store: createMemoryStore(), psc });
    const t0 = Date.now();
    const req = await started(a);
    expect(req.intervalSeconds).toBe(5);
    psc.answer("psc-1", { kind: "pending" }, { kind: "slow_down" });
    await tick(4_999);
    expect(psc.polls).toHaveLength(0);
    await tick(1);
    await tick(5_000);
    // Polls 1 and 2 at 5 s and 10 s; slow_down → 10 s interval from then on.
    await tick(20_000);
    expect(psc.pollTimes(t0)).toEqual([5_000, 10_000, 20_000, 30_000]);
    expect((await a.get(client.id, req.authReqId)).intervalSeconds).toBe(10);
  });

  it("waits what Retry-After says after a 503, and twice the interval without it", async () => {
    const psc = fakePsc();
    const a = replica({ store: createMemoryStore(), psc });
    const t0 = Date.now();
    await started(a);
    psc.answer("psc-1", { kind: "unavailable", retryAfterMs: 30_000 }, { kind: "unavailable" });
    await tick(60_000);
    expect(psc.pollTimes(t0).slice(0, 3)).toEqual([5_000, 35_000, 45_000]);
  });

  it("ends in EXPIRED at the request's expiry, without polling past it", async () => {
    const psc = fakePsc({ expiresInSeconds: 12 });
    const misuse = { beforeCiba: vi.fn(async () => {}), cibaFailed: vi.fn(async () => {}) } as any;
    const a = replica({ store: createMemoryStore(), psc, misuse });
    const t0 = Date.now();
    const req = await started(a);
    const w = watching(a.watch(client.id, req.authReqId));
    await tick(11_999);
    expect(w.statuses()).toEqual(["PENDING"]);
    await tick(1);
    expect(await w.ended).toBeUndefined();
    expect(w.statuses()).toEqual(["PENDING", "EXPIRED"]);
    expect(w.seen.at(-1)?.errorMessage).toMatch(/did not answer in time/);
    expect(psc.pollTimes(t0)).toEqual([5_000, 10_000]);
    expect(misuse.cibaFailed).toHaveBeenCalledWith(NURSE, client.id);
  });

  it("ends in DENIED when the professional refuses, traced and counted as a failure", async () => {
    const psc = fakePsc();
    const traces: any[] = [];
    const misuse = { beforeCiba: vi.fn(async () => {}), cibaFailed: vi.fn(async () => {}) } as any;
    const a = replica({ store: createMemoryStore(), psc, misuse, traces: { record: (e) => traces.push(e) } });
    const req = await started(a);
    psc.answer("psc-1", { kind: "denied" });
    const w = watching(a.watch(client.id, req.authReqId));
    await tick(5_000);
    await w.ended;
    expect(w.statuses()).toEqual(["PENDING", "DENIED"]);
    expect(w.seen.at(-1)?.errorMessage).toMatch(/refused/);
    expect(traces).toEqual([
      expect.objectContaining({ type: "CONNECT_FAILURE", method: "CIBA", outcome: "DENIED" }),
    ]);
    expect(misuse.cibaFailed).toHaveBeenCalledTimes(1);
    // A new start for the professional pushes again: the pending index was cleared.
    await started(a);
    expect(psc.pushes).toHaveLength(2);
  });

  it("wakes a watcher on another replica by notification, and hands the session token out once", async () => {
    const { psc, a, b, calls, req, w } = await watchedFromB();
    psc.answer("psc-1", approved);
    // Approved at the first poll (5 s). The remote watcher's own re-check is 10 s away, so it is
    // the notification that wakes it: at 5 s.
    await tick(4_998);
    expect(w.statuses()).toEqual(["PENDING"]);
    await tick(1);
    await w.ended;
    expect(w.statuses()).toEqual(["PENDING", "APPROVED"]);
    expect(w.seen.at(-1)?.session?.token).toBe("eps_token1");
    // The watcher on b read the request once (after the notification), not every 500 ms.
    expect(calls.filter((c) => c === "get:ciba-request").length).toBeLessThanOrEqual(2);
    expect((await a.get(client.id, req.authReqId)).session?.token).toBeUndefined();
    expect((await b.get(client.id, req.authReqId)).session?.token).toBeUndefined();
    expect((await b.get(client.id, req.authReqId)).session?.sessionId).toBe("s1");
  });

  it("a watcher whose notification was lost (Redis reconnecting) learns the change within 10 s", async () => {
    const psc = fakePsc();
    const a = replica({ store: { ...createMemoryStore(), notify: async () => {} }, psc });
    const req = await started(a);
    const w = watching(a.watch(client.id, req.authReqId));
    psc.answer("psc-1", approved);
    await tick(9_990);
    expect(w.statuses()).toEqual(["PENDING"]);
    await tick(10);
    await w.ended;
    expect(w.statuses()).toEqual(["PENDING", "APPROVED"]);
  });

  it("a remote watcher costs a store read per 10 s while nothing happens", async () => {
    const { calls, w } = await watchedFromB();
    await tick(60_000);
    expect(calls.filter((c) => c === "get:ciba-request").length).toBeLessThanOrEqual(6);
    expect(w.statuses()).toEqual(["PENDING"]);
  });

  it("concurrent starts on two replicas push once and share one request", async () => {
    const psc = fakePsc({ startMs: 1_000 });
    const { a, b } = twoReplicas(psc);
    const all = Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        (i % 2 ? a : b).start(client, { nationalId: NURSE, bindingMessage: "24" }),
      ),
    );
    await tick(1_000);
    const results = await all;
    expect(psc.pushes).toHaveLength(1);
    const ids = new Set(results.map((r) => ("request" in r ? r.request.authReqId : "")));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => !r.reused)).toHaveLength(1);
  });

  it("a start waiting for the gate is woken by its release, not by a timer loop", async () => {
    const psc = fakePsc({ startMs: 8_000 });
    const { a, b, calls } = twoReplicas(psc);
    const first = a.start(client, { nationalId: NURSE });
    await tick(1);
    let second: unknown;
    void b.start(client, { nationalId: NURSE }).then((r) => (second = r));
    await tick(7_998);
    expect(second).toBeUndefined();
    // In 8 s a 50 ms loop would have tried the gate 160 times: here, on arrival and after subscribing.
    expect(calls.filter((c) => c === "lease:ciba-start")).toHaveLength(3);
    await tick(1);
    await first;
    await tick(0);
    expect(second).toMatchObject({ reused: true, request: { authReqId: expect.any(String) } });
    expect(calls.filter((c) => c === "lease:ciba-start")).toHaveLength(4);
    expect(psc.pushes).toHaveLength(1);
  });

  it("a replica that lost its lease stops polling; the replica that took it polls alone", async () => {
    const psc = fakePsc();
    const { a, b, leases } = twoReplicas(psc);
    const req = await started(a);
    await tick(5_000);
    expect(psc.polls).toHaveLength(1);
    // a's lease is lost (a store partition made it expire); b is asked and takes it.
    await leases.get(`ciba-poll:${req.authReqId}`)?.release();
    await b.get(client.id, req.authReqId);
    await tick(1);
    // b polls at once; a keeps its pace until its next renewal (10 s after it took the lease) fails.
    await tick(4_998);
    const before = psc.polls.length;
    await tick(30_000);
    // From 10 s on, one poller only: 30 s / 5 s = 6 polls.
    expect(psc.polls.length - before).toBe(6);
    psc.answer("psc-1", approved);
    const w = watching(a.watch(client.id, req.authReqId));
    await tick(5_000);
    await w.ended;
    expect(w.statuses().at(-1)).toBe("APPROVED");
  });

  it("a request whose replica died is taken over by a watcher on another replica once the lease expires", async () => {
    const psc = fakePsc();
    const store = createMemoryStore();
    const crashable = crashableClock();
    const a = replica({ store, psc, clock: crashable.clock }, "a");
    const b = replica({ store, psc }, "b");
    const t0 = Date.now();
    const req = await started(a);
    const w = watching(b.watch(client.id, req.authReqId));
    await tick(7_000);
    crashable.crash();
    const polled = psc.polls.length;
    // a renewed nothing since t0: its lease ends at 30 s; b's watcher re-checks every 10 s.
    await tick(40_000);
    expect(psc.polls.length).toBeGreaterThan(polled);
    expect(psc.polls[polled]?.at ?? 0).toBeLessThanOrEqual(t0 + 47_000);
    psc.answer("psc-1", approved);
    await tick(5_000);
    await w.ended;
    expect(w.statuses()).toEqual(["PENDING", "APPROVED"]);
  });

  it("drain hands the request over: the other replica polls on at the same pace, the watchers of the drained one end with UNAVAILABLE", async () => {
    const { psc, a, b } = twoReplicas();
    const t0 = Date.now();
    const req = await started(a);
    const onA = watching(a.watch(client.id, req.authReqId));
    const onB = watching(b.watch(client.id, req.authReqId));
    await tick(7_000);
    await a.drain();
    await tick(0);
    const err = await onA.ended;
    expect(err).toBeInstanceOf(EproxyError);
    expect((err as EproxyError).code).toBe("UNAVAILABLE");
    // b took over at once, without anyone asking, and polls when a would have: at 10 s, then 15 s.
    await tick(8_000);
    expect(psc.pollTimes(t0)).toEqual([5_000, 10_000, 15_000]);
    await expect(a.watch(client.id, req.authReqId).next()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    psc.answer("psc-1", approved);
    await tick(5_000);
    await onB.ended;
    expect(onB.statuses()).toEqual(["PENDING", "APPROVED"]);
  });

  /** A store seen from one replica that a partition cuts from Redis (reads and leases fail). */
  function partitionable(base: AuthStore) {
    const state = { down: false };
    const unreachable = () =>
      Promise.reject(new EproxyError("STORE_UNAVAILABLE", "session store unavailable"));
    const store: AuthStore = {
      ...base,
      getTransient: (kind, key) => (state.down ? unreachable() : base.getTransient(kind, key)),
      tryLease: (name, ttlMs) => (state.down ? unreachable() : base.tryLease(name, ttlMs)),
    };
    return { store, state };
  }

  it("a watcher cut from the store goes on watching (no false EXPIRED) and gets the approval once it is back", async () => {
    const psc = fakePsc();
    const base = createMemoryStore();
    const cut = partitionable(base);
    const a = replica({ store: base, psc }, "a");
    const b = replica({ store: cut.store, psc }, "b");
    const req = await started(a);
    const w = watching(b.watch(client.id, req.authReqId));
    await tick(1);
    cut.state.down = true;
    // Several re-checks of b's watcher fail meanwhile; a's poller gets the approval at 25 s.
    await tick(22_000);
    psc.answer("psc-1", approved);
    await tick(8_000);
    expect(w.statuses()).toEqual(["PENDING"]);
    cut.state.down = false;
    await tick(10_000);
    expect(await w.ended).toBeUndefined();
    expect(w.statuses()).toEqual(["PENDING", "APPROVED"]);
    expect(w.seen.at(-1)?.session?.token).toBe("eps_token1");
  });

  it("a watcher cut from the store past the request's expiry ends with STORE_UNAVAILABLE, not EXPIRED", async () => {
    const psc = fakePsc({ expiresInSeconds: 30 });
    const base = createMemoryStore();
    const cut = partitionable(base);
    replica({ store: base, psc }, "a");
    const b = replica({ store: cut.store, psc }, "b");
    const req = await started(replicas[0] as Ciba);
    const w = watching(b.watch(client.id, req.authReqId));
    await tick(1);
    cut.state.down = true;
    await tick(60_000);
    const err = await w.ended;
    expect(err).toBeInstanceOf(EproxyError);
    expect((err as EproxyError).code).toBe("STORE_UNAVAILABLE");
    expect(w.statuses()).toEqual(["PENDING"]);
  });

  it("a store failing over right after PSC's push: the request is still saved, the caller's retry does not push again", async () => {
    const psc = fakePsc();
    const base = createMemoryStore();
    // Redis fails over just after the push: the next four store writes fail, then it is back.
    let failing = 0;
    const unreachable = () =>
      Promise.reject(new EproxyError("STORE_UNAVAILABLE", "session store unavailable"));
    const store: AuthStore = {
      ...base,
      tryLease: (name, ttl) => (failing > 0 && failing-- ? unreachable() : base.tryLease(name, ttl)),
      putTransient: (kind, key, value, ttl) =>
        failing > 0 && failing-- ? unreachable() : base.putTransient(kind, key, value, ttl),
    };
    const pushing = psc.startCiba.bind(psc);
    psc.startCiba = async (...args: Parameters<typeof pushing>) => {
      const r = await pushing(...args);
      failing = 4;
      return r;
    };
    const a = replica({ store, psc }, "a");
    const b = replica({ store: base, psc }, "b");
    const first = a.start(client, { nationalId: NURSE, bindingMessage: "42", newSession: true });
    await tick(10_000);
    const r1 = await first;
    expect("request" in r1 && r1.reused).toBe(false);
    // The caller retries (its answer was slow): the pending request is reused, nothing pushed again.
    const r2 = await b.start(client, { nationalId: NURSE, bindingMessage: "42", newSession: true });
    expect(r2.reused).toBe(true);
    expect("request" in r2 && "request" in r1 && r2.request.authReqId).toBe(
      "request" in r1 && r1.request.authReqId,
    );
    expect(psc.pushes).toHaveLength(1);
    psc.answer("psc-1", approved);
    const w = watching(b.watch(client.id, "request" in r1 ? r1.request.authReqId : ""));
    await tick(40_000);
    expect(w.statuses().at(-1)).toBe("APPROVED");
  });

  it("an approval while Redis fails over still ends APPROVED with its token (session creation and the end retried)", async () => {
    const psc = fakePsc();
    const base = createMemoryStore();
    let down = false;
    const unreachable = () =>
      Promise.reject(new EproxyError("STORE_UNAVAILABLE", "session store unavailable"));
    const store: AuthStore = {
      ...base,
      putTransient: (kind, key, value, ttl) =>
        down ? unreachable() : base.putTransient(kind, key, value, ttl),
    };
    const sessions = fakeSessions();
    const create = sessions.create.bind(sessions);
    sessions.create = (c: ClientConfig) => (down ? unreachable() : create(c));
    const a = replica({ store, psc, sessions }, "a");
    const b = replica({ store: base, psc }, "b");
    const req = await started(a);
    const w = watching(b.watch(client.id, req.authReqId));
    psc.answer("psc-1", approved);
    // Redis goes away just before PSC's approval (5 s) and is back 3 s later.
    await tick(4_900);
    down = true;
    await tick(3_000);
    down = false;
    await tick(20_000);
    expect(await w.ended).toBeUndefined();
    expect(w.statuses()).toEqual(["PENDING", "APPROVED"]);
    expect(w.seen.at(-1)?.session?.token).toBe("eps_token1");
  });

  it("a store unreachable at a lease renewal does not stop the poller", async () => {
    const psc = fakePsc();
    const base = createMemoryStore();
    let down = false;
    const store: AuthStore = {
      ...base,
      async tryLease(name, ttlMs) {
        const l = await base.tryLease(name, ttlMs);
        return (
          l && {
            renew: () => (down ? Promise.reject(new Error("store unreachable")) : l.renew()),
            release: () => l.release(),
          }
        );
      },
    };
    const a = replica({ store, psc });
    const t0 = Date.now();
    await started(a);
    down = true;
    await tick(12_000);
    down = false;
    await tick(18_000);
    expect(psc.pollTimes(t0)).toEqual([5_000, 10_000, 15_000, 20_000, 25_000, 30_000]);
  });

  it("a blocking wait (settled) on a replica that drains ends with UNAVAILABLE and a Retry-After", async () => {
    const psc = fakePsc();
    const a = replica({ store: createMemoryStore(), psc });
    const req = await started(a);
    const waiting = a.settled(client.id, req.authReqId).catch((e: unknown) => e);
    await tick(1_000);
    await a.drain();
    const err = await waiting;
    expect(err).toMatchObject({ code: "UNAVAILABLE", retryAfterSeconds: 1 });
  });

  it("drain resolves after the hand-over is written, the lease given back and the watchers told (the store may close then)", async () => {
    const psc = fakePsc();
    const base = createMemoryStore();
    const order: string[] = [];
    let holding = false;
    let gate: (() => void) | undefined;
    const store: AuthStore = {
      ...base,
      async putTransient(kind, id, value, ttlMs) {
        if (holding && kind === "ciba-request") {
          // The hand-over write: held until the test lets it go.
          holding = false;
          await new Promise<void>((r) => (gate = r));
          order.push("save");
        }
        return base.putTransient(kind, id, value, ttlMs);
      },
      async tryLease(name, ttlMs) {
        const l = await base.tryLease(name, ttlMs);
        return (
          l && {
            renew: () => l.renew(),
            release: async () => {
              order.push("release");
              return l.release();
            },
          }
        );
      },
      async notify(topic, message) {
        order.push(`notify ${topic.split(":")[0]}`);
        return base.notify(topic, message);
      },
    };
    const a = replica({ store, psc });
    await started(a);
    await tick(1_000);
    order.length = 0;
    holding = true;
    let done = false;
    const drained = a.drain().then(() => (done = true));
    await tick(100);
    expect(gate).toBeTypeOf("function");
    expect(done).toBe(false);
    (gate as () => void)();
    await drained;
    expect(order).toEqual(["save", "release", "notify ciba", expect.stringMatching(/^notify /)]);
  });

  it("drain lets a poll in flight finish: an approval PSC already gave is not lost", async () => {
    let answer: (o: CibaPollOutcome) => void = () => {};
    const psc = fakePsc();
    psc.pollCiba = async (_c, authReqId) => {
      psc.polls.push({ authReqId, at: Date.now() });
      return new Promise((r) => (answer = r));
    };
    const store = createMemoryStore();
    const a = replica({ store, psc }, "a");
    const req = await started(a);
    await tick(5_000);
    expect(psc.polls).toHaveLength(1);
    const drained = a.drain();
    let done = false;
    void drained.then(() => (done = true));
    await tick(100);
    expect(done).toBe(false);
    answer(approved);
    await drained;
    const b = replica({ store, psc }, "b");
    const v = await b.get(client.id, req.authReqId);
    expect(v.status).toBe("APPROVED");
    expect(v.session?.token).toBe("eps_token1");
  });
});
