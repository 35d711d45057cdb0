/**
 * Classification of foreign errors where they enter eProxy: undici (`UND_ERR_*`), Node's socket and
 * TLS codes, fetch's `TimeoutError`, and openid-client's errors (an OAuth error answered by the
 * server, or an answer that does not conform). Each adapter (PSC, teleservices, their
 * authorization servers) turns the class into its own EproxyError; the walk along `cause` chains
 * is done here once, the way connect-node's `node-error.ts` does it.
 */
import * as oidc from "openid-client";
import { EproxyError } from "../errors.ts";

/** At most this many links of a `cause` chain are followed (chains can be cyclic). */
const MAX_DEPTH = 8;

/** The error and its causes, outermost first. */
export function* causes(err: unknown): Generator<unknown> {
  let e: unknown = err;
  for (let i = 0; i < MAX_DEPTH && e; i++) {
    yield e;
    e = (e as { cause?: unknown }).cause;
  }
}

/** The first error of the chain matching `pred`. */
export function findCause<T>(err: unknown, pred: (e: unknown) => e is T): T | undefined {
  for (const e of causes(err)) if (pred(e)) return e;
  return undefined;
}

/** Every string `code` along the chain (for classification and for logs). */
export function codesOf(err: unknown): string[] {
  const out: string[] = [];
  for (const e of causes(err)) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === "string") out.push(c);
  }
  return out;
}

/** eProxy's own error somewhere in the chain (thrown by a hook of ours inside a library). */
export function ownError(err: unknown): EproxyError | undefined {
  return findCause(err, (e): e is EproxyError => e instanceof EproxyError);
}

/**
 * Thrown by our fetch hooks when a server answers 5xx, so that the status and its `Retry-After`
 * survive the library that called the hook.
 */
export class HttpUnavailable extends Error {
  /** HTTP status the server answered. */
  readonly status: number;
  /** `Retry-After`, in milliseconds, when the server sent one. */
  readonly retryAfterMs: number | undefined;
  constructor(status: number, retryAfterMs: number | undefined) {
    super(`answered HTTP ${status}`);
    this.name = "HttpUnavailable";
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A `Retry-After` header (seconds or an HTTP date) in milliseconds from now. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const s = Number(header);
  if (Number.isFinite(s)) return Math.max(0, s * 1000);
  const d = Date.parse(header);
  return Number.isNaN(d) ? undefined : Math.max(0, d - now);
}

const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
]);
const TIMEOUT_CODES = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);
const ABORT_CODES = new Set(["UND_ERR_ABORTED", "ABORT_ERR"]);

function isTlsCode(code: string): boolean {
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

/**
 * TLS alerts a server sends when it refuses the client's certificate in the handshake (unknown
 * CA, bad, revoked, expired or missing certificate, access denied): Node names them after
 * OpenSSL's reason string, `ERR_SSL_<prefix>_ALERT_<name>`. The prefix depends on the OpenSSL
 * release: `SSLV3` for the alerts SSL 3 defined until OpenSSL 3.2, `SSL/TLS` for the same alerts
 * since (Node 24 ships OpenSSL 3.5: Keycloak refusing an untrusted certificate arrives as
 * `ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_UNKNOWN`), `TLSV1` and `TLSV13` for the later ones. Keycloak
 * behind PSC does this with an untrusted certificate.
 */
const CERT_REFUSAL_ALERT =
  /^ERR_SSL_(?:SSLV3|SSL\/TLS|TLS|TLSV1|TLSV13)_ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_REQUIRED|ACCESS_DENIED|CERTIFICATE_UNKNOWN|CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|UNSUPPORTED_CERTIFICATE|HANDSHAKE_FAILURE|NO_CERTIFICATE)$/;

/**
 * The alert by which the peer refused our client certificate (e.g. `UNKNOWN_CA`), when that is
 * what happened: a credentials problem of eProxy's, not the peer being down.
 */
export function peerRefusedCertificate(err: unknown): string | undefined {
  for (const c of codesOf(err)) {
    const m = CERT_REFUSAL_ALERT.exec(c);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * What went wrong on the wire, in the order that decides: a timeout (headers, body, or fetch's
 * `AbortSignal.timeout`), a TLS failure (handshake, certificate), no connection at all (safe to
 * retry: no byte left), a cancellation by our side, or a connection that closed under the request.
 */
export type TransportFailure = "timeout" | "tls" | "connect" | "aborted" | "closed";

/** Classifies a transport-level failure by the codes along its cause chain. */
export function transportFailureOf(err: unknown): TransportFailure {
  const codes = codesOf(err);
  if (
    codes.some((c) => TIMEOUT_CODES.has(c)) ||
    findCause(err, (e): e is Error => (e as Error | undefined)?.name === "TimeoutError")
  ) {
    return "timeout";
  }
  if (codes.some(isTlsCode)) return "tls";
  if (codes.some((c) => CONNECT_CODES.has(c))) return "connect";
  if (codes.some((c) => ABORT_CODES.has(c))) return "aborted";
  return "closed";
}

/** An OAuth error a server answered: from a JSON body, or from a `WWW-Authenticate` challenge. */
export interface OAuthError {
  /** The `error` code (`invalid_grant`, `invalid_client`, `authorization_pending`, ...). */
  error: string;
  /** HTTP status of the answer. */
  status: number;
}

/** The OAuth error in an openid-client failure, if the server answered one. */
export function oauthErrorOf(err: unknown): OAuthError | undefined {
  const body = findCause(err, (e): e is oidc.ResponseBodyError => e instanceof oidc.ResponseBodyError);
  if (body) return { error: body.error, status: body.status };
  const challenge = findCause(
    err,
    (e): e is oidc.WWWAuthenticateChallengeError => e instanceof oidc.WWWAuthenticateChallengeError,
  );
  const error = challenge?.cause.find((c) => c.parameters.error)?.parameters.error;
  return challenge && error ? { error, status: challenge.status } : undefined;
}

/**
 * True when openid-client rejected what the server answered (not JSON, a missing field, a bad ID
 * token) rather than failing to reach it: a network failure (a TypeError inside) or a timeout
 * (openid-client's OAUTH_TIMEOUT around a DOMException TimeoutError — a partitioned PSC) is no answer.
 */
export function isNonConformingAnswer(err: unknown): boolean {
  return (
    findCause(err, (e): e is oidc.ClientError => e instanceof oidc.ClientError) !== undefined &&
    findCause(err, (e): e is TypeError => e instanceof TypeError) === undefined &&
    transportFailureOf(err) !== "timeout" &&
    !codesOf(err).some((c) => c === "OAUTH_TIMEOUT" || c === "OAUTH_ABORT")
  );
}
