/**
 * One-shot network probes for `eproxy doctor`: a TLS handshake with a client certificate, an HTTPS GET
 * over mTLS, a Redis and a MongoDB connection with the configured credentials. Each opens its own
 * connection, bounds it by a timeout, closes it, and reports the peer's own words on failure (a
 * refused password, an unknown CA) rather than a generic "unavailable".
 */
import { isIP } from "node:net";
import tls from "node:tls";
import { Redis, type RedisOptions } from "ioredis";
import { MongoClient } from "mongodb";
import { Agent, fetch } from "undici";

/** TLS material of a client: PEM certificate and key, or a PKCS#12 bundle. */
export type ClientTlsMaterial = { cert: string; key: string } | { pfx: Buffer; passphrase: string };

/** What a successful handshake showed. */
export interface HandshakeResult {
  protocol: string;
  /** Subject of the server's certificate. */
  serverSubject: string;
  /** End of validity of the server's certificate. */
  serverValidTo: Date;
  ms: number;
}

/** Connection error codes in words an operator recognises. */
const NET_TEXT: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host name not found",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "timed out",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  UND_ERR_CONNECT_TIMEOUT: "connect timed out",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed server certificate",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "server certificate not issued by the configured CA",
  SELF_SIGNED_CERT_IN_CHAIN: "server certificate chain ends at an untrusted root",
  CERT_HAS_EXPIRED: "server certificate expired",
  ERR_TLS_CERT_ALTNAME_INVALID: "server certificate does not name this host",
};

/** A short description of a network or TLS error, walking `cause` chains. */
export function describeNetError(err: unknown): string {
  for (let e = err as (Error & { code?: string; cause?: unknown }) | undefined, i = 0; e && i < 5; i++) {
    if (e.code && NET_TEXT[e.code]) return `${NET_TEXT[e.code]} (${e.code})`;
    if (e.name === "TimeoutError" || e.name === "AbortError") return "timed out";
    if (!e.cause) break;
    e = e.cause as typeof e;
  }
  const e = err as Error & { code?: string };
  if (e.code === "EPROXY_TLS_REFUSED") return e.message;
  // OpenSSL alerts: ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE, ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED, ...
  const alert = /_ALERT_(\w+)$/.exec(e.code ?? "")?.[1];
  if (alert)
    return `the server refused the TLS handshake: ${alert.toLowerCase().replaceAll("_", " ")} (${e.code})`;
  return e.code ? `${e.message} (${e.code})` : e.message;
}

/**
 * Completes a TLS handshake with `host:port` presenting the client certificate, then waits briefly:
 * with TLS 1.3 a server that rejects the certificate says so just after the handshake.
 */
export function tlsHandshake(opts: {
  host: string;
  port: number;
  client: ClientTlsMaterial;
  ca?: string;
  timeoutMs: number;
}): Promise<HandshakeResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: opts.host,
      port: opts.port,
      ...(isIP(opts.host) ? {} : { servername: opts.host }),
      ...opts.client,
      ...(opts.ca ? { ca: opts.ca } : {}),
      minVersion: "TLSv1.2",
      ALPNProtocols: ["h2", "http/1.1"],
    });
    let settled = false;
    const done = (err: unknown, result?: HandshakeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(result as HandshakeResult);
    };
    const timer = setTimeout(
      () => done(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })),
      opts.timeoutMs,
    );
    let handshaken = false;
    socket.once("error", (err: NodeJS.ErrnoException) => {
      // TLS 1.2: a server that refuses the certificate resets the connection during the handshake.
      if (!handshaken && err.code === "ECONNRESET") {
        done(
          Object.assign(
            new Error(
              "connection reset during the TLS handshake: the server refused the client certificate (or does not speak TLS)",
            ),
            { code: "EPROXY_TLS_REFUSED" },
          ),
        );
      } else done(err);
    });
    // TLS 1.3: the handshake completes first; a refused certificate then closes the connection.
    socket.once("close", () =>
      done(
        Object.assign(
          new Error(
            "the server closed the connection after the TLS handshake: it refused the client certificate",
          ),
          {
            code: "EPROXY_TLS_REFUSED",
          },
        ),
      ),
    );
    socket.once("secureConnect", () => {
      handshaken = true;
      // Read, so that an alert or a close right after the handshake is seen.
      socket.resume();
      const peer = socket.getPeerX509Certificate();
      const result: HandshakeResult = {
        protocol: socket.getProtocol() ?? "TLS",
        serverSubject: peer?.subject.split("\n").join(", ") ?? "",
        serverValidTo: peer ? new Date(peer.validTo) : new Date(0),
        ms: Math.round(performance.now() - started),
      };
      // A certificate refused after a TLS 1.3 handshake arrives as an alert within a round trip.
      setTimeout(() => done(undefined, result), 300);
    });
  });
}

/** An HTTPS GET over mTLS: status, headers and the JSON body when there is one. */
export async function getOverMtls(
  url: string,
  opts: { client?: ClientTlsMaterial; ca?: string; timeoutMs: number },
): Promise<{ status: number; date: string | null; json: unknown; ms: number }> {
  const agent = new Agent({
    connect: { ...opts.client, ...(opts.ca ? { ca: opts.ca } : {}), minVersion: "TLSv1.2" },
  });
  const started = performance.now();
  try {
    const res = await fetch(url, { dispatcher: agent, signal: AbortSignal.timeout(opts.timeoutMs) });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return {
      status: res.status,
      date: res.headers.get("date"),
      json,
      ms: Math.round(performance.now() - started),
    };
  } finally {
    await agent.close().catch(() => {});
  }
}

/** Redis connection settings as in `stores.sessions` (standalone, sentinel or cluster). */
export interface RedisProbeConfig {
  url: string;
  sentinel?: { name: string; nodes: readonly string[] } | undefined;
  clusterNodes?: readonly string[] | undefined;
  caFile?: string | undefined;
}

/** A Redis connection that fails fast: no retry, no offline queue. */
export async function withRedis<T>(
  cfg: RedisProbeConfig & { ca?: string },
  timeoutMs: number,
  use: (redis: Redis) => Promise<T>,
): Promise<T> {
  const u = new URL(cfg.url);
  const options: RedisOptions = {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) || 0 } : {}),
    ...(u.protocol === "rediss:" ? { tls: { ...(cfg.ca ? { ca: cfg.ca } : {}) } } : {}),
  };
  const nodes = (list: readonly string[]) =>
    list.map((n) => ({ host: n.split(":")[0] as string, port: Number(n.split(":")[1]) }));
  const redis = cfg.sentinel
    ? new Redis({
        ...options,
        sentinels: nodes(cfg.sentinel.nodes),
        name: cfg.sentinel.name,
        sentinelRetryStrategy: () => null,
      })
    : new Redis({ ...options, host: u.hostname, port: Number(u.port || 6379) });
  // The server's own refusal (WRONGPASS, NOAUTH) arrives as an error event; connect() then only
  // says the connection closed.
  let refusal: Error | undefined;
  redis.on("error", (err: Error) => {
    refusal ??= err;
  });
  try {
    try {
      await redis.connect();
    } catch (err) {
      throw refusal ?? err;
    }
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

/** Pings MongoDB with the URL's credentials; resolves with the server version. */
export async function probeMongo(url: string, timeoutMs: number): Promise<{ version: string }> {
  const client = new MongoClient(url, {
    serverSelectionTimeoutMS: timeoutMs,
    connectTimeoutMS: timeoutMs,
    socketTimeoutMS: timeoutMs,
  });
  try {
    await client.connect();
    const db = client.db();
    await db.command({ ping: 1 });
    // A read the application needs: proves the credentials reach its database, not only the server.
    await db.collection("traces").findOne({}, { projection: { _id: 1 } });
    const info = (await db
      .admin()
      .command({ buildInfo: 1 })
      .catch(() => ({}))) as { version?: string };
    return { version: info.version ?? "unknown" };
  } finally {
    await client.close().catch(() => {});
  }
}
