/**
 * RFC 8693 token exchange on openid-client: `genericGrantRequest` with `tls_client_auth` at the
 * teleservice's authorization server, the client's certificate carried by the same undici pool as
 * its relayed calls (openid-client's `customFetch` hook, as its documentation shows for mTLS).
 * Failures are translated here: `invalid_grant` means the PSC session is no longer good.
 */
import type { ConnectionOptions } from "node:tls";
import * as oidc from "openid-client";
import type { Logger } from "pino";
import { type Dispatcher, fetch as undiciFetch } from "undici";
import type { TeleserviceConfig } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { TokenExchange } from "../relay/ports.ts";
import {
  findCause,
  HttpUnavailable,
  isNonConformingAnswer,
  oauthErrorOf,
  ownError,
  peerRefusedCertificate,
  retryAfterMs,
  transportFailureOf,
} from "./foreign-errors.ts";
import { certificateRefusal } from "./tls-probe.ts";
import { toUpstreamError } from "./upstream-undici.ts";

const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
/** Lifetime assumed when the authorization server does not say (RFC 8693 §2.2.1 makes it optional). */
const DEFAULT_EXPIRES_IN_SECONDS = 3600;

/** Creates the token exchange over the pools `dispatcherFor` lends (one per client and teleservice). */
export function createOpenidTokenExchange(deps: {
  dispatcherFor(clientId: string, t: TeleserviceConfig): Dispatcher;
  log: Logger;
  /**
   * The TLS options of a client towards a teleservice's authorization server, for the one probe
   * handshake that tells a refused certificate from a server that closed the connection.
   */
  tlsFor?(clientId: string, t: TeleserviceConfig): ConnectionOptions | undefined;
}): TokenExchange {
  const { dispatcherFor, log } = deps;
  const probed = new Map<string, { until: number; alert: string | undefined }>();

  /** The TLS alert by which the AS refused the client's certificate, when that is why it closed. */
  async function refusalOf(
    err: unknown,
    clientId: string,
    t: TeleserviceConfig,
  ): Promise<string | undefined> {
    const endpoint = t.tokenExchange?.endpoint;
    if (!endpoint || ownError(err) || peerRefusedCertificate(err) || transportFailureOf(err) !== "closed") {
      return undefined;
    }
    const options = deps.tlsFor?.(clientId, t);
    if (!options) return undefined;
    // One probe a minute per client and server, however many exchanges fail meanwhile.
    const key = `${clientId}\n${new URL(endpoint).host}`;
    let p = probed.get(key);
    if (!p || p.until < Date.now()) {
      p = { until: Date.now() + 60_000, alert: await certificateRefusal(endpoint, options) };
      probed.set(key, p);
    }
    return p.alert;
  }
  // One Configuration per (client, teleservice); the pool is looked up at each call, so a rotated
  // certificate is used as soon as the registry hands it out.
  const configs = new Map<string, oidc.Configuration>();

  function configFor(clientId: string, t: TeleserviceConfig): oidc.Configuration {
    const te = t.tokenExchange;
    if (!te) throw new EproxyError("INTERNAL", "no token exchange configured");
    const key = `${clientId}\n${t.name}\n${te.endpoint}`;
    let cfg = configs.get(key);
    if (!cfg) {
      cfg = new oidc.Configuration(
        { issuer: new URL(te.endpoint).origin, token_endpoint: te.endpoint },
        clientId,
        undefined,
        oidc.TlsClientAuth(),
      );
      cfg[oidc.customFetch] = async (url, options) => {
        const res = await undiciFetch(url, {
          ...(options as object),
          dispatcher: dispatcherFor(clientId, t),
        } as Parameters<typeof undiciFetch>[1]);
        // A 5xx (JSON or an HTML page from a load balancer) is the server being down, whatever its body.
        if (res.status >= 500) {
          await res.body?.cancel();
          throw new HttpUnavailable(res.status, retryAfterMs(res.headers.get("retry-after")));
        }
        return res as unknown as Response;
      };
      cfg.timeout = Math.ceil(t.headersTimeoutMs / 1000);
      configs.set(key, cfg);
    }
    return cfg;
  }

  return {
    // No caller signal: openid-client bounds the call with `timeout`, and other relays may be waiting
    // for the same exchange (single flight).
    async exchange({ clientId, teleservice, subjectToken }) {
      const te = teleservice.tokenExchange;
      const cfg = configFor(clientId, teleservice);
      const parameters: Record<string, string> = {
        subject_token: subjectToken,
        subject_token_type: te?.subjectTokenType ?? ACCESS_TOKEN_TYPE,
        requested_token_type: ACCESS_TOKEN_TYPE,
        ...(te?.scope ? { scope: te.scope } : {}),
        ...(te?.audience ? { audience: te.audience } : {}),
        ...(te?.resource ? { resource: te.resource } : {}),
        ...te?.extraParams,
      };
      try {
        const r = await oidc.genericGrantRequest(cfg, TOKEN_EXCHANGE_GRANT, parameters);
        return {
          accessToken: r.access_token,
          expiresInSeconds: typeof r.expires_in === "number" ? r.expires_in : DEFAULT_EXPIRES_IN_SECONDS,
        };
      } catch (err) {
        const alert = await refusalOf(err, clientId, teleservice);
        const seen = alert
          ? Object.assign(new Error(`TLS alert ${alert}`), {
              code: `ERR_SSL_TLSV1_ALERT_${alert}`,
              cause: err,
            })
          : err;
        throw toExchangeError(seen, teleservice.name, log, te?.endpoint);
      }
    },
  };
}

/**
 * Maps a failed exchange to the relay's error codes. The authorization server being down or
 * unreachable is TOKEN_EXCHANGE_UNAVAILABLE naming it (with its Retry-After), never the teleservice;
 * a server refusing our certificate in the handshake is a credentials problem (PERMISSION_DENIED).
 */
export function toExchangeError(
  err: unknown,
  service: string,
  log: Pick<Logger, "warn">,
  endpoint?: string,
): EproxyError {
  const own = ownError(err);
  if (own) return own;
  const as = endpoint ? new URL(endpoint).host : "?";
  const refused = peerRefusedCertificate(err);
  if (refused) {
    log.warn(
      { service, peer: as, reason: refused },
      "authorization server refused eProxy's client certificate in the TLS handshake",
    );
    return new EproxyError(
      "PERMISSION_DENIED",
      `authorization server of ${service} (${as}) refused this client's certificate (TLS ${refused.toLowerCase()})`,
      { cause: err },
    );
  }
  const unavailable = findCause(err, (e): e is HttpUnavailable => e instanceof HttpUnavailable);
  const oauth = oauthErrorOf(err);
  if (unavailable || oauth || isNonConformingAnswer(err)) {
    log.warn(
      { service, status: unavailable?.status ?? oauth?.status, error: oauth?.error },
      "token exchange refused",
    );
  }
  if (unavailable) {
    return new EproxyError(
      "TOKEN_EXCHANGE_UNAVAILABLE",
      `token exchange unavailable: authorization server of ${service} (${as}) answered HTTP ${unavailable.status}`,
      {
        cause: err,
        ...(unavailable.retryAfterMs !== undefined
          ? { retryAfterSeconds: Math.max(1, unavailable.retryAfterMs / 1000) }
          : {}),
      },
    );
  }
  if (oauth?.error === "invalid_grant") {
    return new EproxyError(
      "REAUTHENTICATION_REQUIRED",
      "the teleservice refused the PSC session: re-authentication required",
      { cause: err },
    );
  }
  if (oauth || isNonConformingAnswer(err)) {
    return new EproxyError(
      "UPSTREAM_BAD_RESPONSE",
      `authorization server of ${service} refused the exchange`,
      {
        cause: err,
      },
    );
  }
  const transport = toUpstreamError(err, `${service} (token exchange)`);
  if (transport.code === "UPSTREAM_UNAVAILABLE" || transport.code === "UPSTREAM_TIMEOUT") {
    return new EproxyError(
      "TOKEN_EXCHANGE_UNAVAILABLE",
      `token exchange unavailable: authorization server of ${service} (${as}) ${
        transport.code === "UPSTREAM_TIMEOUT" ? "did not answer in time" : "is unreachable"
      }`,
      { cause: err },
    );
  }
  return transport;
}
