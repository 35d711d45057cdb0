/**
 * In-memory AuthStore: the embedded default for one instance and the sandbox. Expired entries are
 * invisible at once and swept every minute.
 */
import type { AuthStore, SessionRecord, TransientKind, WindowCount } from "../auth/store.ts";
import { createNotifyHub } from "./notify-hub.ts";

interface Entry<T> {
  value: T;
  expiresAt: number;
}

/** A session, with its window of counted uses (kept across writes, gone with the session). */
interface SessionEntry extends Entry<SessionRecord> {
  uses?: WindowCount;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** Creates the in-memory store. `now` is injectable for tests. */
export function createMemoryStore(now: () => number = Date.now): AuthStore {
  const sessions = new Map<string, SessionEntry>();
  const index = new Map<string, Entry<string>>();
  const transient = new Map<string, Entry<string>>();
  const leases = new Map<string, Entry<symbol>>();
  const counters = new Map<string, Entry<number>>();
  const hub = createNotifyHub();
  const live = <E extends Entry<unknown>>(m: Map<string, E>, k: string): E | undefined => {
    const e = m.get(k);
    if (!e) return undefined;
    if (e.expiresAt <= now()) {
      m.delete(k);
      return undefined;
    }
    return e;
  };
  const indexKey = (clientId: string, nationalId: string) => `${clientId}\n${nationalId}`;
  const touch = (id: string, ttlMs: number): SessionEntry | undefined => {
    const e = live(sessions, id);
    if (!e) return undefined;
    e.expiresAt = Math.min(now() + ttlMs, e.value.absoluteExpiresAt);
    const ie = index.get(indexKey(e.value.clientId, e.value.professional.nationalId));
    if (ie?.value === id) ie.expiresAt = e.expiresAt;
    return e;
  };
  const sweep = setInterval(() => {
    for (const m of [sessions, index, transient, counters] as Array<Map<string, Entry<unknown>>>) {
      for (const [k, e] of m) if (e.expiresAt <= now()) m.delete(k);
    }
  }, 60_000);
  sweep.unref();

  return {
    async countSessions() {
      const t = now();
      let n = 0;
      for (const e of sessions.values()) if (e.expiresAt > t) n++;
      return n;
    },
    async getSession(id) {
      // Frozen at write: callers share it without a per-call deep copy (they spread, never mutate).
      return live(sessions, id)?.value;
    },
    async sessionIdleExpiry(id) {
      return live(sessions, id)?.expiresAt;
    },
    async putSession(rec, ttlMs) {
      const cur = live(sessions, rec.id);
      if ((cur?.value.version ?? 0) !== rec.version - 1) return false;
      const expiresAt = Math.min(now() + ttlMs, rec.absoluteExpiresAt);
      sessions.set(rec.id, {
        value: deepFreeze(structuredClone(rec)),
        expiresAt,
        ...(cur?.uses ? { uses: cur.uses } : {}),
      });
      index.set(indexKey(rec.clientId, rec.professional.nationalId), { value: rec.id, expiresAt });
      return true;
    },
    async touchSession(id, ttlMs) {
      touch(id, ttlMs);
    },
    async useSession(id, ttlMs) {
      return touch(id, ttlMs)?.value;
    },
    async useSessionCounted(id, ttlMs, windowMs) {
      const e = touch(id, ttlMs);
      if (!e) return undefined;
      const t = now();
      if (!e.uses || e.uses.resetAt <= t) e.uses = { count: 0, resetAt: t + windowMs };
      e.uses.count += 1;
      return { session: e.value, uses: { ...e.uses } };
    },
    async deleteSession(id) {
      const e = sessions.get(id);
      sessions.delete(id);
      if (e) {
        const k = indexKey(e.value.clientId, e.value.professional.nationalId);
        if (index.get(k)?.value === id) index.delete(k);
      }
    },
    async findSessionId(clientId, nationalId) {
      const e = live(index, indexKey(clientId, nationalId));
      return e && live(sessions, e.value) ? e.value : undefined;
    },
    async putTransient(kind: TransientKind, key, value, ttlMs) {
      transient.set(`${kind}:${key}`, { value: JSON.stringify(value), expiresAt: now() + ttlMs });
    },
    async takeTransient<T>(kind: TransientKind, key: string) {
      const k = `${kind}:${key}`;
      const e = live(transient, k);
      transient.delete(k);
      return e ? (JSON.parse(e.value) as T) : undefined;
    },
    async getTransient<T>(kind: TransientKind, key: string) {
      const e = live(transient, `${kind}:${key}`);
      return e ? (JSON.parse(e.value) as T) : undefined;
    },
    async deleteTransient(kind, key) {
      transient.delete(`${kind}:${key}`);
    },
    async tryLease(name, ttlMs) {
      if (live(leases, name)) return undefined;
      const owner = Symbol(name);
      leases.set(name, { value: owner, expiresAt: now() + ttlMs });
      return {
        async renew() {
          const e = live(leases, name);
          if (e?.value !== owner) return false;
          e.expiresAt = now() + ttlMs;
          return true;
        },
        async release() {
          if (leases.get(name)?.value === owner) leases.delete(name);
        },
      };
    },
    async hit(counter, windowMs) {
      const e = live(counters, counter) ?? { value: 0, expiresAt: now() + windowMs };
      e.value += 1;
      counters.set(counter, e);
      return { count: e.value, resetAt: e.expiresAt };
    },
    async peek(counter) {
      const e = live(counters, counter);
      return e ? { count: e.value, resetAt: e.expiresAt } : { count: 0, resetAt: 0 };
    },
    async notify(topic, message) {
      // Delivered after the caller's turn, as a pub/sub message from another replica would be.
      queueMicrotask(() => hub.emit(topic, message));
    },
    async subscribe(topic, listener) {
      return hub.add(topic, listener);
    },
    async ping() {},
    async close() {
      clearInterval(sweep);
      sessions.clear();
      index.clear();
      transient.clear();
      counters.clear();
      hub.clear();
    },
  };
}
