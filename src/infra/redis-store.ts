/**
 * AuthStore on Redis (ioredis: standalone, Sentinel or Cluster; TLS and ACL users from the URL).
 * Every value is sealed with the key ring (AES-256-GCM, AAD = its store key); keys are hashes,
 * never raw tokens; TTLs follow the session's idle and absolute limits. Session writes are
 * compare-and-set on a version field (Lua); leases are SET NX PX with an owner check on renew and
 * release. Notifications between replicas are Redis pub/sub on one channel per key prefix, over a
 * second connection (a subscribed connection cannot run commands). Redis failures surface as
 * STORE_UNAVAILABLE; ioredis reconnects by itself (and subscribes again).
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import type { AuthStore, SessionRecord, SessionUse, TransientKind } from "../auth/store.ts";
import type { Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { KeyRing } from "./key-ring.ts";
import { createNotifyHub } from "./notify-hub.ts";

type RedisConfig = Extract<Config["stores"]["sessions"], { kind: "redis" }>;

// KEYS[1] session; ARGV: expected previous version ("0" = absent), new version, sealed data, ttl ms, index key.
const CAS_PUT = `
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3], 'i', ARGV[5], 'a', ARGV[6], 'x', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1`;
// The idle touch without reading the sealed record: 'a' (absolute expiry, ms) is kept beside it.
// -1 for a record written before 'a' existed (the caller then reads it). The index key is answered
// only for a record written before 'x': since 'x', the index lives to the absolute end (it only
// points at the session, whose existence findSessionId checks) and needs no touch.
const TOUCH = `
local a = redis.call('HGET', KEYS[1], 'a')
if not a then return -1 end
local ttl = math.floor(math.min(tonumber(ARGV[1]), tonumber(a) - tonumber(ARGV[2])))
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('HEXISTS', KEYS[1], 'x') == 1 then return {ttl, ''} end
return {ttl, redis.call('HGET', KEYS[1], 'i') or ''}`;
// The session lookup of a call in one round trip: the idle touch as TOUCH does it, and the sealed
// record only when its version differs from ARGV[3] (the version the caller holds opened; '' for
// none): a call on an unchanged session moves a few bytes, and the caller neither opens nor parses.
// With ARGV[4] (a window, ms), the call is also counted in a fixed window kept in the session's
// hash ('n' count, 'w' end in ms; same key, so same slot in a cluster, and gone with the session),
// started by the first count on the caller's clock (ARGV[2]), as the absolute end is compared.
// false when missing; {v, d or '', ttl, index, count, window end}, ttl -1 for a record written
// before 'a' existed (count and window end 0 when not counting).
const USE = `
local v = redis.call('HMGET', KEYS[1], 'v', 'a', 'i', 'x', 'w')
if not v[1] then return false end
local d = ''
if v[1] ~= ARGV[3] then d = redis.call('HGET', KEYS[1], 'd') or '' end
local n, w = 0, 0
if ARGV[4] ~= '' then
  local t = tonumber(ARGV[2])
  w = tonumber(v[5] or '0')
  if w <= t then
    w = t + tonumber(ARGV[4])
    n = 1
    redis.call('HSET', KEYS[1], 'n', 1, 'w', w)
  else
    n = redis.call('HINCRBY', KEYS[1], 'n', 1)
  end
end
local index = v[3] or ''
if v[4] then index = '' end
if not v[2] then return {v[1], d, -1, v[3] or '', n, w} end
local ttl = math.floor(math.min(tonumber(ARGV[1]), tonumber(v[2]) - tonumber(ARGV[2])))
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], ttl)
return {v[1], d, ttl, index, n, w}`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
// INCR, and start the window on the first event; answers the count and the time left.
const HIT = `local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return {n, redis.call('PTTL', KEYS[1])}`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** The scripts, each with one key (so each runs in one slot of a cluster). */
const LUA = {
  eproxyCasPut: CAS_PUT,
  eproxyTouch: TOUCH,
  eproxyUse: USE,
  eproxyRenew: RENEW,
  eproxyHit: HIT,
  eproxyRelease: RELEASE,
};
type Scripts = Record<keyof typeof LUA, (key: string, ...args: string[]) => Promise<unknown>>;

/**
 * Defines the scripts on a connection: ioredis then sends them by SHA (EVALSHA) and their text only
 * on a connection's first use (EVAL, which loads it) or after NOSCRIPT (a flushed or restarted
 * Redis): a relayed call no longer sends and hashes half a kilobyte of Lua.
 */
function defineScripts(redis: Redis | Cluster): Scripts {
  for (const [name, lua] of Object.entries(LUA)) redis.defineCommand(name, { lua, numberOfKeys: 1 });
  return redis as unknown as Scripts;
}

/** Default bound of the opened-session cache, in characters of the sealed records it holds. */
const OPENED_MAX_CHARS = 16 * 1024 * 1024;

/** A session record opened (decrypted and parsed) once, for as long as its stored version stays. */
interface Opened {
  version: number;
  rec: SessionRecord;
  /** Length of the sealed record (the cache's measure of size). */
  size: number;
  /** Last idle expiry seen (ms since epoch): past it, the entry is swept. */
  idleUntil: number;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

/** Connection options shared by every topology, from the URL (credentials, db, TLS). */
function baseOptions(cfg: RedisConfig): RedisOptions {
  const u = new URL(cfg.url);
  const tls =
    u.protocol === "rediss:"
      ? { ...(cfg.caFile ? { ca: readFileSync(cfg.caFile, "utf8") } : {}) }
      : undefined;
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db: Number(u.pathname.slice(1) || 0),
    ...(tls ? { tls } : {}),
    // Fail fast while disconnected (clear UNAVAILABLE errors) and reconnect in the background.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: cfg.commandTimeoutMs,
    connectTimeout: cfg.commandTimeoutMs,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  };
}

/** Opens the configured Redis topology. */
export function connectRedis(cfg: RedisConfig): Redis | Cluster {
  const opts = baseOptions(cfg);
  if (cfg.clusterNodes) {
    return new Cluster(cfg.clusterNodes.map(hostPort), { redisOptions: opts, enableOfflineQueue: false });
  }
  if (cfg.sentinel) {
    // failoverDetector: the sentinels' +switch-master moves the connection to the new master at once.
    // Without it the connection stayed on the old master, which took writes until the sentinels
    // turned it into a replica (seconds later) and then dropped them with its resync: sessions
    // created meanwhile were lost (multi-host rig, SENTINEL FAILOVER: 11 of 24).
    return new Redis({
      ...opts,
      sentinels: cfg.sentinel.nodes.map(hostPort),
      name: cfg.sentinel.name,
      failoverDetector: true,
    });
  }
  const u = new URL(cfg.url);
  return new Redis({ ...opts, host: u.hostname, port: Number(u.port || 6379) });
}

/** Creates the Redis store. */
export function createRedisStore(
  cfg: RedisConfig,
  ring: KeyRing,
  log: Logger,
  now: () => number = Date.now,
  options: {
    /** Bound of the opened-session cache (characters of sealed records; 0 turns it off). */
    openedMaxChars?: number;
  } = {},
): AuthStore {
  const redis = connectRedis(cfg);
  const scripts = defineScripts(redis);
  let lastState = "";
  redis.on("error", (err: Error & { code?: string }) => {
    // One line per state change, not one per reconnect attempt.
    if (lastState !== "error") log.warn({ code: err.code }, "Redis unavailable");
    lastState = "error";
  });
  redis.on("ready", () => {
    if (lastState === "error") log.info("Redis available again");
    lastState = "ready";
  });
  const p = cfg.keyPrefix;
  const sKey = (id: string) => `${p}s:${id}`;
  // The index key hides who the professional is: a hash of client id and national id.
  const iKey = (clientId: string, nationalId: string) =>
    `${p}i:${createHash("sha256").update(`${clientId}\n${nationalId}`).digest("hex")}`;
  // Hashed: keys may be secrets (one-time codes) or identifiers (a professional's national id).
  const tKey = (kind: TransientKind, key: string) =>
    `${p}t:${kind}:${createHash("sha256").update(key).digest("hex")}`;
  const cKey = (name: string) => `${p}c:${createHash("sha256").update(name).digest("hex")}`;
  const lKey = (name: string) => `${p}l:${createHash("sha256").update(name).digest("hex")}`;
  /** A sealed transient record, opened under its store key (undefined when missing or unopenable). */
  const openTransient = <T>(sealed: string | null, k: string): T | undefined => {
    const json = sealed ? ring.open(sealed, k) : undefined;
    return json ? (JSON.parse(json) as T) : undefined;
  };

  // One channel for every topic: replicas receive all notifications and dispatch them locally, so
  // a subscription is one local map entry rather than a SUBSCRIBE round trip per watcher. Topics
  // travel hashed and messages sealed, like keys and values.
  const channel = `${p}n`;
  const topicHash = (topic: string) => createHash("sha256").update(topic).digest("hex");
  const hub = createNotifyHub();
  let subscriber: Redis | Cluster | undefined;
  let subscribed: Promise<void> | undefined;
  function onMessage(ch: string, msg: string): void {
    if (ch !== channel) return;
    const hash = msg.slice(0, 64);
    if (!hub.has(hash)) return;
    const sealed = msg.slice(65);
    hub.emit(hash, sealed ? ring.open(sealed, `${channel}:${hash}`) : undefined);
  }
  function subscribeOnce(): Promise<void> {
    subscribed ??= (async () => {
      const sub: Redis | Cluster = redis instanceof Cluster ? redis.duplicate() : redis.duplicate();
      subscriber = sub;
      sub.on("error", () => {}); // reported once by the command connection's handler
      sub.on("message", onMessage);
      await readyOf(sub);
      await sub.subscribe(channel);
    })().catch((err: unknown) => {
      subscribed = undefined;
      subscriber?.disconnect();
      subscriber = undefined;
      throw err;
    });
    return subscribed;
  }

  /** Waits (bounded) for `conn` to be (re)connected. */
  function readyOf(conn: Redis | Cluster): Promise<void> {
    if (conn.status === "ready") return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        conn.off("ready", onReady);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      const timer = setTimeout(
        () => done(new Error(`Redis not ready (${conn.status})`)),
        cfg.commandTimeoutMs,
      );
      conn.once("ready", onReady);
    });
  }

  /**
   * Waits (bounded) for a connection that is being (re)established, instead of failing at once.
   * One shared wait (one listener) however many commands arrive during a stall: a listener per
   * command tripped MaxListenersExceededWarning.
   */
  let waiting: Promise<void> | undefined;
  function ready(): Promise<void> {
    if (redis.status === "ready") return Promise.resolve();
    waiting ??= readyOf(redis).finally(() => {
      waiting = undefined;
    });
    return waiting;
  }

  async function run<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      await ready();
      return await f();
    } catch (err) {
      if (err instanceof EproxyError) throw err;
      throw new EproxyError("STORE_UNAVAILABLE", "session store unavailable", {
        cause: Object.assign(new Error(what), { cause: err }),
      });
    }
  }

  function openSession(id: string, sealed: string | null | undefined): SessionRecord | undefined {
    if (!sealed) return undefined;
    const json = ring.open(sealed, sKey(id));
    // A record sealed with a retired key (or tampered with) reads as absent: the session is over.
    return json ? (JSON.parse(json) as SessionRecord) : undefined;
  }

  // Sessions opened by this process, by id, least recently used first. Every lookup still asks
  // Redis (so a deletion, an expiry or another replica's write is seen at once): the entry only
  // spares the transfer, AES-GCM open and JSON parse of a record whose version has not changed.
  // Records are frozen: callers share them (they spread, never mutate), as with the memory store.
  const openedMax = options.openedMaxChars ?? OPENED_MAX_CHARS;
  const opened = new Map<string, Opened>();
  let openedChars = 0;
  function forget(id: string): void {
    const e = opened.get(id);
    if (!e) return;
    opened.delete(id);
    openedChars -= e.size;
  }
  function remember(id: string, version: number, rec: SessionRecord, size: number, idleUntil: number): void {
    if (size > openedMax) return;
    const cur = opened.get(id);
    // Replies of one connection arrive in order, but a newer version never gives way to an older one.
    if (cur && cur.version > version) return;
    forget(id);
    opened.set(id, { version, rec: deepFreeze(rec), size, idleUntil });
    openedChars += size;
    for (const [old, e] of opened) {
      if (openedChars <= openedMax) break;
      opened.delete(old);
      openedChars -= e.size;
    }
  }
  /** The opened record of `id`, unless its session reached its absolute end. */
  function openedOf(id: string): Opened | undefined {
    const e = opened.get(id);
    if (e && e.rec.absoluteExpiresAt <= now()) {
      forget(id);
      return undefined;
    }
    return e;
  }
  // PSC tokens are not kept in memory past the session's end as this process last saw it.
  const sweep = setInterval(() => {
    const t = now();
    for (const [id, e] of opened) if (e.idleUntil <= t || e.rec.absoluteExpiresAt <= t) forget(id);
  }, 60_000);
  sweep.unref();

  /** The lookup of a call (`useSession`), counting it in a window of `windowMs` when given. */
  function use(id: string, ttlMs: number, windowMs: number | undefined): Promise<SessionUse | undefined> {
    return run("use session", async () => {
      const key = sKey(id);
      const held = openedOf(id);
      const got = (await scripts.eproxyUse(
        key,
        String(ttlMs),
        String(now()),
        held ? String(held.version) : "",
        windowMs === undefined ? "" : String(Math.max(1, Math.round(windowMs))),
      )) as [string, string, number, string, number, number] | null;
      if (!got) {
        forget(id);
        return undefined;
      }
      const [version, sealed, given, index, count, resetAt] = got;
      let rec: SessionRecord | undefined;
      if (sealed) {
        rec = openSession(id, sealed);
        if (!rec) {
          forget(id);
          return undefined;
        }
      } else if (held) {
        rec = held.rec;
      } else {
        return undefined;
      }
      let ttl = given;
      if (ttl < 0) {
        // Written before 'a': the touch is computed here.
        ttl = Math.max(1, Math.min(ttlMs, rec.absoluteExpiresAt - now()));
        await redis.pexpire(key, ttl);
      }
      if (index) await redis.pexpire(index, ttl);
      if (sealed) {
        remember(id, Number(version), rec, sealed.length, now() + ttl);
      } else if (held && opened.get(id) === held) {
        // Most recently used last; the idle expiry follows the touch.
        opened.delete(id);
        opened.set(id, held);
        held.idleUntil = now() + ttl;
      }
      return { session: rec, uses: { count, resetAt } };
    });
  }

  return {
    getSession: (id) => run("get session", async () => openSession(id, await redis.hget(sKey(id), "d"))),

    sessionIdleExpiry: (id) =>
      run("session ttl", async () => {
        const ttl = await redis.pttl(sKey(id));
        return ttl > 0 ? now() + ttl : undefined;
      }),

    putSession: (rec, ttlMs) =>
      run("put session", async () => {
        const ttl = Math.max(1, Math.min(ttlMs, rec.absoluteExpiresAt - now()));
        const key = sKey(rec.id);
        const index = iKey(rec.clientId, rec.professional.nationalId);
        const json = JSON.stringify(rec);
        const sealed = ring.seal(json, key);
        const ok = await scripts.eproxyCasPut(
          key,
          String(rec.version - 1),
          String(rec.version),
          sealed,
          String(ttl),
          index,
          String(rec.absoluteExpiresAt),
        );
        if (ok !== 1) return false;
        // The writer's next call needs no read of what it just wrote.
        remember(rec.id, rec.version, JSON.parse(json) as SessionRecord, sealed.length, now() + ttl);
        // Separate command: in a cluster the index may live in another slot than the session. It
        // lives to the absolute end ('x' in the record), so the idle touch of each call skips it.
        await redis.set(index, rec.id, "PX", Math.max(1, rec.absoluteExpiresAt - now()));
        return true;
      }),

    touchSession: (id, ttlMs) =>
      run("touch session", async () => {
        const key = sKey(id);
        // One script instead of reading and opening the record (two round trips and an AES-GCM open).
        const touched = (await scripts.eproxyTouch(key, String(ttlMs), String(now()))) as
          | number
          | [number, string];
        if (Array.isArray(touched)) {
          if (touched[1]) await redis.pexpire(touched[1], touched[0]);
          return;
        }
        const [sealed, index] = await redis.hmget(key, "d", "i");
        const rec = openSession(id, sealed);
        if (!rec) return;
        const ttl = Math.max(1, Math.min(ttlMs, rec.absoluteExpiresAt - now()));
        await redis.pexpire(key, ttl);
        if (index) await redis.pexpire(index, ttl);
      }),

    useSession: async (id, ttlMs) => (await use(id, ttlMs, undefined))?.session,

    useSessionCounted: (id, ttlMs, windowMs) => use(id, ttlMs, windowMs),

    deleteSession: (id) =>
      run("delete session", async () => {
        forget(id);
        const key = sKey(id);
        const index = await redis.hget(key, "i");
        await redis.del(key);
        if (index && (await redis.get(index)) === id) await redis.del(index);
      }),

    findSessionId: (clientId, nationalId) =>
      run("find session", async () => {
        const id = await redis.get(iKey(clientId, nationalId));
        return id && (await redis.exists(sKey(id))) ? id : undefined;
      }),

    putTransient: (kind, key, value, ttlMs) =>
      run("put transient", async () => {
        const k = tKey(kind, key);
        await redis.set(k, ring.seal(JSON.stringify(value), k), "PX", ttlMs);
      }),

    getTransient: <T>(kind: TransientKind, key: string) =>
      run("get transient", async () => {
        const k = tKey(kind, key);
        return openTransient<T>(await redis.get(k), k);
      }),

    deleteTransient: (kind, key) =>
      run("delete transient", async () => {
        await redis.del(tKey(kind, key));
      }),

    takeTransient: <T>(kind: TransientKind, key: string) =>
      run("take transient", async () => {
        const k = tKey(kind, key);
        // GETDEL: read and delete in one step, so a one-time code is redeemed once across replicas.
        return openTransient<T>(await redis.getdel(k), k);
      }),

    tryLease: (name, ttlMs) =>
      run("lease", async () => {
        const key = lKey(name);
        const owner = randomBytes(16).toString("hex");
        const ok = await redis.set(key, owner, "PX", ttlMs, "NX");
        if (ok !== "OK") return undefined;
        return {
          // Unreachable Redis is an error, not a lost lease: the holder tries again while it may still hold it.
          renew: () =>
            run("renew lease", async () => (await scripts.eproxyRenew(key, owner, String(ttlMs))) === 1),
          release: async () => {
            await scripts.eproxyRelease(key, owner).catch(() => 0);
          },
        };
      }),

    hit: (counter, windowMs) =>
      run("count", async () => {
        const [n, ttl] = (await scripts.eproxyHit(cKey(counter), String(windowMs))) as [number, number];
        return { count: n, resetAt: now() + Math.max(0, ttl) };
      }),

    peek: (counter) =>
      run("count", async () => {
        const key = cKey(counter);
        const [n, ttl] = await Promise.all([redis.get(key), redis.pttl(key)]);
        return n && ttl > 0 ? { count: Number(n), resetAt: now() + ttl } : { count: 0, resetAt: 0 };
      }),

    notify: (topic, message) =>
      run("notify", async () => {
        const hash = topicHash(topic);
        const sealed = message === undefined ? "" : ring.seal(message, `${channel}:${hash}`);
        await redis.publish(channel, `${hash}.${sealed}`);
      }),

    subscribe: (topic, listener) =>
      run("subscribe", async () => {
        await subscribeOnce();
        return hub.add(topicHash(topic), listener);
      }),

    ping: () =>
      run("ping", async () => {
        await redis.ping();
      }),

    // For the live-sessions gauge, at scrape time only: SCAN, never KEYS, so Redis is not blocked.
    // A cluster would need one scan per master: not counted there.
    countSessions: (): Promise<number | undefined> =>
      redis instanceof Cluster
        ? Promise.resolve(undefined)
        : run("count sessions", async () => {
            const match = `${p.replace(/[*?[\]\\]/g, "\\$&")}s:*`;
            let n = 0;
            let cursor = "0";
            do {
              const [next, keys] = await redis.scan(cursor, "MATCH", match, "COUNT", 1000);
              n += keys.length;
              cursor = next;
            } while (cursor !== "0");
            return n;
          }),

    async close() {
      clearInterval(sweep);
      opened.clear();
      openedChars = 0;
      hub.clear();
      if (subscriber) await subscriber.quit().catch(() => subscriber?.disconnect());
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
