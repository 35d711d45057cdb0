/**
 * The relay's upstream on undici: one Agent per (client certificate, teleservice) — so a pooled TLS
 * connection carries one identity — with TLS 1.2+, the teleservice's CA bundle, explicit connect /
 * headers / body timeouts and a cap on connections per origin. undici errors are translated here,
 * by their codes, walking `cause` chains.
 */
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import type { Logger } from "pino";
import { Agent, request } from "undici";
import type { ClientIdentity, ClientLookup } from "../auth/clients.ts";
import type { TeleserviceConfig } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Upstream } from "../relay/ports.ts";

const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
]);
const TIMEOUT_CODES = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

function codesOf(err: unknown): string[] {
  const out: string[] = [];
  let e: unknown = err;
  for (let i = 0; i < 8 && e; i++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === "string") out.push(c);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

function ownError(err: unknown): EproxyError | undefined {
  let e: unknown = err;
  for (let i = 0; i < 8 && e; i++) {
    if (e instanceof EproxyError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function isTlsFailure(code: string): boolean {
  return (
    code.startsWith("ERR_TLS") ||
    code.startsWith("ERR_SSL") ||
    code.startsWith("CERT_") ||
    code.includes("SELF_SIGNED") ||
    code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE" ||
    code === "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" ||
    code === "HOSTNAME_MISMATCH"
  );
}

/** Translates an undici failure into the relay's error codes. */
export function toUpstreamError(err: unknown, service: string): EproxyError {
  const own = ownError(err);
  if (own) return own;
  const codes = codesOf(err);
  if (codes.some((c) => TIMEOUT_CODES.has(c))) {
    return new EproxyError("UPSTREAM_TIMEOUT", `teleservice ${service} did not answer in time`, {
      cause: err,
    });
  }
  if (codes.some(isTlsFailure)) {
    return new EproxyError("UPSTREAM_BAD_RESPONSE", `TLS with teleservice ${service} failed`, { cause: err });
  }
  if (codes.some((c) => CONNECT_CODES.has(c))) {
    return new EproxyError("UPSTREAM_UNAVAILABLE", `teleservice ${service} is unreachable`, { cause: err });
  }
  if (codes.some((c) => c === "UND_ERR_ABORTED" || c === "ABORT_ERR")) {
    return new EproxyError("UNAVAILABLE", "request cancelled", { cause: err });
  }
  return new EproxyError("UPSTREAM_BAD_RESPONSE", `teleservice ${service} closed the connection`, {
    cause: err,
  });
}

/** Creates the undici upstream. */
export function createUndiciUpstream(clients: ClientLookup, log: Logger): Upstream {
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
      connect: { ...id.tls, ...(ca ? { ca } : {}), minVersion: "TLSv1.2", timeout: t.connectTimeoutMs },
      connections: t.maxConnectionsPerOrigin,
      headersTimeout: t.headersTimeoutMs,
      bodyTimeout: t.bodyTimeoutMs,
      keepAliveTimeout: 30_000,
    });
    agents.set(key, { identity: id, agent });
    return agent;
  }

  return {
    async post({ clientId, teleservice, url, headers, body, signal }) {
      const dispatcher = agentFor(clientId, teleservice);
      let pulled = false;
      const source = body[Symbol.asyncIterator]();
      // Marks the moment undici asks for the first body byte: from then on, no retry. Until then,
      // a failed attempt must not close the source, which the retry still needs.
      const attemptBody = () =>
        Readable.from({
          [Symbol.asyncIterator]: () => ({
            next: () => {
              pulled = true;
              return source.next();
            },
            return: async () => {
              if (pulled) await source.return?.();
              return { done: true as const, value: undefined };
            },
          }),
        });
      for (let attempt = 1; ; attempt++) {
        try {
          const res = await request(url, {
            method: "POST",
            headers,
            body: attemptBody(),
            dispatcher,
            ...(signal ? { signal } : {}),
          });
          return { status: res.statusCode, headers: res.headers, body: res.body };
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

    async exchange({ clientId, teleservice, subjectToken, signal }) {
      const te = teleservice.tokenExchange;
      if (!te) throw new EproxyError("INTERNAL", "no token exchange configured");
      const form = new URLSearchParams({
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token: subjectToken,
        subject_token_type: te.subjectTokenType,
        requested_token_type: "urn:ietf:params:oauth:token-type:access_token",
        ...(te.scope ? { scope: te.scope } : {}),
        ...(te.audience ? { audience: te.audience } : {}),
        ...(te.resource ? { resource: te.resource } : {}),
        ...te.extraParams,
      });
      let res: Awaited<ReturnType<typeof request>>;
      try {
        res = await request(te.endpoint, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
          body: form.toString(),
          dispatcher: agentFor(clientId, teleservice),
          ...(signal ? { signal } : {}),
        });
      } catch (err) {
        throw toUpstreamError(err, `${teleservice.name} (token exchange)`);
      }
      const text = await res.body.text().catch(() => "");
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(text);
      } catch {
        // handled below
      }
      if (res.statusCode === 200 && typeof json.access_token === "string") {
        return {
          accessToken: json.access_token,
          expiresInSeconds: typeof json.expires_in === "number" ? json.expires_in : 3600,
        };
      }
      log.warn(
        { service: teleservice.name, status: res.statusCode, error: json.error },
        "token exchange refused",
      );
      if (json.error === "invalid_grant") {
        throw new EproxyError(
          "REAUTHENTICATION_REQUIRED",
          "the teleservice refused the PSC session: re-authentication required",
        );
      }
      if (res.statusCode >= 500)
        throw new EproxyError(
          "UPSTREAM_UNAVAILABLE",
          `authorization server of ${teleservice.name} unavailable`,
        );
      throw new EproxyError(
        "UPSTREAM_BAD_RESPONSE",
        `authorization server of ${teleservice.name} refused the exchange`,
      );
    },

    async close() {
      await Promise.all([...agents.values()].map((a) => a.agent.close()));
    },
  };
}
