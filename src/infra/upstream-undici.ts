/**
 * The relay's upstream on undici: one Agent per (client certificate, teleservice) — so a pooled TLS
 * connection carries one identity — with TLS 1.2+, the teleservice's CA bundle, explicit connect /
 * headers / body timeouts and a cap on connections per origin. undici errors are translated here,
 * by their codes, walking `cause` chains.
 */
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import type { Logger } from "pino";
import { Agent, type Dispatcher } from "undici";
import type { ClientIdentity, ClientLookup } from "../auth/clients.ts";
import type { TeleserviceConfig } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Upstream } from "../relay/ports.ts";
import { codesOf, ownError, transportFailureOf } from "./foreign-errors.ts";

/** Translates an undici failure into the relay's error codes. */
export function toUpstreamError(err: unknown, service: string): EproxyError {
  const own = ownError(err);
  if (own) return own;
  const cause = { cause: err };
  switch (transportFailureOf(err)) {
    case "timeout":
      return new EproxyError("UPSTREAM_TIMEOUT", `teleservice ${service} did not answer in time`, cause);
    case "tls":
      return new EproxyError("UPSTREAM_BAD_RESPONSE", `TLS with teleservice ${service} failed`, cause);
    case "connect":
      return new EproxyError("UPSTREAM_UNAVAILABLE", `teleservice ${service} is unreachable`, cause);
    case "aborted":
      return new EproxyError("UNAVAILABLE", "request cancelled", cause);
    case "closed":
      return new EproxyError("UPSTREAM_BAD_RESPONSE", `teleservice ${service} closed the connection`, cause);
  }
}

/**
 * The answer's body, whose reading fails with the relay's errors, not undici's: a teleservice that
 * resets its connection in the middle of its answer is its failure (UPSTREAM_BAD_RESPONSE), a stall
 * past the body timeout UPSTREAM_TIMEOUT, and our own cancel (the caller hung up) UNAVAILABLE. The
 * stream is kept (the relay destroys it to drop an answer); only its iterator is wrapped.
 */
function failingAsUpstream(body: Readable, service: string): Readable {
  const iterate = body[Symbol.asyncIterator];
  const fail = (err: unknown): never => {
    throw toUpstreamError(err, service);
  };
  body[Symbol.asyncIterator] = function iterator(this: Readable) {
    const it: AsyncIterator<unknown> = iterate.call(this);
    return {
      next: () => it.next().then(undefined, fail),
      return: (value?: unknown) =>
        it.return ? it.return(value) : Promise.resolve({ done: true as const, value: undefined }),
      [Symbol.asyncIterator]() {
        return this;
      },
    } as ReturnType<Readable[typeof Symbol.asyncIterator]>;
  };
  return body;
}

/** The undici upstream, which also lends its per-(client, teleservice) pools to the token exchange. */
export interface UndiciUpstream extends Upstream {
  /** The pool that carries `clientId`'s certificate to `t` (and to its authorization server). */
  dispatcherFor(clientId: string, t: TeleserviceConfig): Dispatcher;
}

/** Creates the undici upstream. */
export function createUndiciUpstream(clients: ClientLookup, log: Logger): UndiciUpstream {
  // Keyed by (client, teleservice), rebuilt when the registry hands out another identity.
  const agents = new Map<string, { identity: ClientIdentity; agent: Agent }>();
  const cas = new Map<string, string>();

  function agentFor(clientId: string, t: TeleserviceConfig): Agent {
    const key = `${clientId}\n${t.name}`;
    const id = clients.identity(clientId);
    if (!id) throw new EproxyError("PERMISSION_DENIED", "unknown client");
    const cached = agents.get(key);
    if (cached?.identity === id) return cached.agent;
    if (cached) void cached.agent.close().catch(() => {});
    let ca: string | undefined;
    if (t.caFile) {
      ca = cas.get(t.caFile) ?? readFileSync(t.caFile, "utf8");
      cas.set(t.caFile, ca);
    }
    const agent = new Agent({
      connect: {
        ...id.tls,
        ...(ca ? { ca } : {}),
        minVersion: "TLSv1.2",
        timeout: t.connectTimeoutMs,
        // TLS session resumption: a new pooled connection skips the full (mTLS) handshake.
        maxCachedSessions: 100,
      },
      connections: t.maxConnectionsPerOrigin,
      // SOAP POSTs are not idempotent: one request per connection at a time (no HTTP/1.1 pipelining).
      pipelining: 1,
      headersTimeout: t.headersTimeoutMs,
      bodyTimeout: t.bodyTimeoutMs,
      // Keep-alive: idle pooled connections live 30 s unless the server's Keep-Alive says less.
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
    });
    agents.set(key, { identity: id, agent });
    return agent;
  }

  return {
    dispatcherFor: agentFor,

    async post({ clientId, teleservice, url, headers, body, signal }) {
      const dispatcher = agentFor(clientId, teleservice);
      let pulled = false;
      const whole = body instanceof Uint8Array ? body : undefined;
      const source = whole ? undefined : (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      // Marks the moment undici asks for the first body byte: from then on, no retry. Until then,
      // a failed attempt must not close the source, which the retry still needs.
      // Streamed bodies go through a Readable: its read-ahead (16 chunks) overlaps reading the caller
      // with writing upstream, which measured faster for large MTOM uploads than undici pulling the
      // iterable chunk by chunk. Small bodies are sent whole (below) and pay no stream.
      const attemptBody = (): AsyncIterable<Uint8Array> => ({
        [Symbol.asyncIterator]: () => ({
          next: () => {
            pulled = true;
            return (source as AsyncIterator<Uint8Array>).next();
          },
          return: async () => {
            if (pulled) await source?.return?.();
            return { done: true as const, value: undefined };
          },
        }),
      });
      for (let attempt = 1; ; attempt++) {
        try {
          // The dispatcher's own `request` with origin and path: what undici's top-level `request(url)`
          // does after parsing the URL and copying the options, minus that work.
          const res = await dispatcher.request({
            origin: url.origin,
            path: url.search ? `${url.pathname}${url.search}` : url.pathname,
            method: "POST",
            headers,
            // A buffer can be sent again: a connect failure means none of it left.
            body: whole ?? Readable.from(attemptBody()),
            signal,
          });
          return {
            status: res.statusCode,
            headers: res.headers,
            body: failingAsUpstream(res.body, teleservice.name),
          };
        } catch (err) {
          const mapped = toUpstreamError(err, teleservice.name);
          // Only a connection that never opened may be retried, and only once (ITI-41 is not idempotent).
          if (attempt === 1 && !pulled && mapped.code === "UPSTREAM_UNAVAILABLE") {
            log.warn(
              { service: teleservice.name, codes: codesOf(err) },
              "upstream connect failed, retrying once",
            );
            continue;
          }
          throw mapped;
        }
      }
    },

    async close() {
      await Promise.all([...agents.values()].map((a) => a.agent.close()));
    },
  };
}
