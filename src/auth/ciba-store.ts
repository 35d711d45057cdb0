/**
 * Where CIBA requests are shared between replicas, on the session store: the request record, the
 * pending index per (client, professional), the single-use session token, the poll lease, the
 * start gate, and the notifications that wake watchers and hand requests over. Also the clock and
 * the wake-up primitive the CIBA modules wait with (injectable, so that tests run on fake time).
 */
import type { CibaRecord } from "./ciba-machine.ts";
import type { AuthStore, Lease } from "./store.ts";

/** Time and timers, injectable for tests. */
export interface CibaClock {
  now(): number;
  /** Calls `fn` after `ms`; must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The process clock (looked up at each call, so fake timers installed later apply). */
export const systemClock: CibaClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** A wake-up flag: `wake()` ends the current or the next `wait()` (none is lost in between). */
export interface Waker {
  wake(): void;
  /** Resolves on a wake-up, after `ms`, or when `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Creates a waker on `clock`. */
export function createWaker(clock: CibaClock): Waker {
  let pending = false;
  let release: (() => void) | undefined;
  return {
    wake() {
      pending = true;
      release?.();
    },
    async wait(ms, signal) {
      if (!pending && !signal?.aborted) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clock.clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            release = undefined;
            resolve();
          };
          const timer = clock.setTimeout(done, ms);
          signal?.addEventListener("abort", done, { once: true });
          release = done;
        });
      }
      pending = false;
    },
  };
}

/**
 * Runs a store write again while the store is unavailable (STORE_UNAVAILABLE: a Redis failover takes
 * 2–5 s), waiting 0.25 s, doubling, up to a last wait of 4 s (~8 s in all); other failures at once.
 * For the writes whose loss a caller would pay for: a second push, an approval nobody receives.
 */
export async function retryWhileStoreDown<T>(clock: CibaClock, write: () => Promise<T>): Promise<T> {
  for (let delay = 250; ; delay *= 2) {
    try {
      return await write();
    } catch (err) {
      const down = (err as { code?: unknown } | undefined)?.code === "STORE_UNAVAILABLE";
      if (!down || delay > 4_000) throw err;
      await new Promise<void>((resolve) => clock.setTimeout(resolve, delay));
    }
  }
}

/** How long a final request stays readable (the session token is handed out once within it). */
const FINAL_KEEP_MS = 5 * 60_000;
/** Topic on which a stopping replica names the requests it hands over. */
const HAND_OVER_TOPIC = "ciba-hand-over";

/** The shared state of CIBA requests. */
export interface CibaStore {
  load(id: string): Promise<CibaRecord | undefined>;
  /** Writes the record; it stays readable a while after its expiry. */
  save(rec: CibaRecord): Promise<void>;
  /** Stores the session token of an approved request, handed out once. */
  putToken(id: string, token: string): Promise<void>;
  /** Takes the session token, whichever replica asks first. */
  takeToken(id: string): Promise<string | undefined>;
  /** The pending request of a client for a professional. */
  pendingId(clientId: string, nationalId: string): Promise<string | undefined>;
  setPending(rec: CibaRecord): Promise<void>;
  clearPending(rec: CibaRecord): Promise<void>;
  /** The lease of the replica that polls PSC for a request. */
  tryPollLease(id: string, ttlMs: number): Promise<Lease | undefined>;
  /**
   * Takes the start gate of (client, professional) — the reuse check and the push are one step —
   * waiting for its release (a notification, not a loop) up to `timeoutMs`; undefined on timeout.
   */
  acquireGate(
    clientId: string,
    nationalId: string,
    ttlMs: number,
    timeoutMs: number,
  ): Promise<Lease | undefined>;
  /** Wakes the watchers of a request on every replica (after a write). */
  changed(id: string): Promise<void>;
  /** Calls `listener` when a request changes; resolves once listening. */
  onChange(id: string, listener: () => void): Promise<() => void>;
  /** Tells every replica that a request has no poller any more. */
  handedOver(id: string): Promise<void>;
  /** Calls `listener` with each request handed over; resolves once listening. */
  onHandOver(listener: (id: string) => void): Promise<() => void>;
}

/** Creates the CIBA view of the session store. */
export function createCibaStore(store: AuthStore, clock: CibaClock = systemClock): CibaStore {
  const pendingKey = (clientId: string, nationalId: string) => `${clientId}\n${nationalId}`;
  const requestTopic = (id: string) => `ciba:${id}`;

  return {
    load: (id) => store.getTransient<CibaRecord>("ciba-request", id),
    save: (rec) =>
      store.putTransient(
        "ciba-request",
        rec.id,
        rec,
        Math.max(1, rec.expiresAt - clock.now()) + FINAL_KEEP_MS,
      ),
    putToken: (id, token) => store.putTransient("ciba-token", id, token, FINAL_KEEP_MS),
    takeToken: (id) => store.takeTransient<string>("ciba-token", id),
    pendingId: (clientId, nationalId) =>
      store.getTransient<string>("ciba-pending", pendingKey(clientId, nationalId)),
    setPending: (rec) =>
      store.putTransient(
        "ciba-pending",
        pendingKey(rec.clientId, rec.nationalId),
        rec.id,
        Math.max(1, rec.expiresAt - clock.now()),
      ),
    clearPending: (rec) => store.deleteTransient("ciba-pending", pendingKey(rec.clientId, rec.nationalId)),
    tryPollLease: (id, ttlMs) => store.tryLease(`ciba-poll:${id}`, ttlMs),

    async acquireGate(clientId, nationalId, ttlMs, timeoutMs) {
      const name = `ciba-start:${pendingKey(clientId, nationalId)}`;
      // The holder's release wakes the waiters; the one that takes the lease first goes on.
      const gate = (lease: Lease): Lease => ({
        renew: () => lease.renew(),
        async release() {
          await lease.release();
          await store.notify(name).catch(() => {});
        },
      });
      const first = await store.tryLease(name, ttlMs);
      if (first) return gate(first);
      const waker = createWaker(clock);
      const off = await store.subscribe(name, () => waker.wake());
      try {
        const deadline = clock.now() + timeoutMs;
        for (;;) {
          // Tried after subscribing: a release in between is not missed.
          const lease = await store.tryLease(name, ttlMs);
          if (lease) return gate(lease);
          const left = deadline - clock.now();
          if (left <= 0) return undefined;
          // A holder that died frees the gate when its lease expires, within `ttlMs`: the wait
          // ends by the deadline at the latest and the gate is tried once more.
          await waker.wait(left);
        }
      } finally {
        off();
      }
    },

    changed: (id) => store.notify(requestTopic(id)),
    onChange: (id, listener) => store.subscribe(requestTopic(id), () => listener()),
    handedOver: (id) => store.notify(HAND_OVER_TOPIC, id),
    onHandOver: (listener) =>
      store.subscribe(HAND_OVER_TOPIC, (id) => {
        if (id) listener(id);
      }),
  };
}
