/**
 * eProxy's error codes on the client side: every error eProxy returns carries a
 * `google.rpc.ErrorInfo` detail whose `reason` is one of these codes and whose `domain` is
 * `eproxy.fr` (REST answers carry the same code in the problem document's `code` member).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, LocalizedMessageSchema } from "./gen/google/rpc/error_details_pb.js";

/** The `domain` of eProxy's ErrorInfo details. */
export const EPROXY_ERROR_DOMAIN = "eproxy.fr";

/** Every code eProxy reports (ErrorInfo.reason, problem+json `code`). */
export const EPROXY_ERROR_CODES = [
  "INVALID_ARGUMENT",
  "UNAUTHENTICATED",
  "SESSION_INVALID",
  "REAUTHENTICATION_REQUIRED",
  "PERMISSION_DENIED",
  "AUTHENTICATION_DENIED",
  "AUTHENTICATION_EXPIRED",
  "NOT_FOUND",
  "METHOD_NOT_ALLOWED",
  "CONFLICT",
  "PAYLOAD_TOO_LARGE",
  "TOO_MANY_REQUESTS",
  "NOT_IMPLEMENTED",
  "PSC_UNAVAILABLE",
  "STORE_UNAVAILABLE",
  "UPSTREAM_UNAVAILABLE",
  "TOKEN_EXCHANGE_UNAVAILABLE",
  "UPSTREAM_TIMEOUT",
  "UPSTREAM_BAD_RESPONSE",
  "UNAVAILABLE",
  "INTERNAL",
] as const;

/** One of eProxy's error codes. */
export type EproxyErrorCode = (typeof EPROXY_ERROR_CODES)[number];

/** The Connect code eProxy gives each of its codes on Connect and gRPC. */
const CONNECT_CODES: Record<EproxyErrorCode, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  UNAUTHENTICATED: Code.Unauthenticated,
  SESSION_INVALID: Code.Unauthenticated,
  REAUTHENTICATION_REQUIRED: Code.Unauthenticated,
  PERMISSION_DENIED: Code.PermissionDenied,
  AUTHENTICATION_DENIED: Code.PermissionDenied,
  AUTHENTICATION_EXPIRED: Code.DeadlineExceeded,
  NOT_FOUND: Code.NotFound,
  METHOD_NOT_ALLOWED: Code.Unimplemented,
  CONFLICT: Code.AlreadyExists,
  PAYLOAD_TOO_LARGE: Code.ResourceExhausted,
  TOO_MANY_REQUESTS: Code.ResourceExhausted,
  NOT_IMPLEMENTED: Code.Unimplemented,
  PSC_UNAVAILABLE: Code.Unavailable,
  STORE_UNAVAILABLE: Code.Unavailable,
  UPSTREAM_UNAVAILABLE: Code.Unavailable,
  TOKEN_EXCHANGE_UNAVAILABLE: Code.Unavailable,
  UPSTREAM_TIMEOUT: Code.DeadlineExceeded,
  UPSTREAM_BAD_RESPONSE: Code.Unavailable,
  UNAVAILABLE: Code.Unavailable,
  INTERNAL: Code.Internal,
};

/** What an eProxy error says, read from a ConnectError (or an EproxyRelayError). */
export interface EproxyErrorDetails {
  /** eProxy's code (ErrorInfo.reason); a code newer than this package is passed through as is. */
  code: EproxyErrorCode | (string & {});
  /** The Connect/gRPC status code. */
  connectCode: Code;
  /** The public message (English). */
  message: string;
  /** When the call may be retried, in seconds (ErrorInfo metadata `retryAfterSeconds`). */
  retryAfterSeconds?: number;
  /** The message for the end user in French, when eProxy gave one (google.rpc.LocalizedMessage). */
  localizedMessage?: string;
  /** Every metadata entry of the ErrorInfo. */
  metadata: Record<string, string>;
}

/**
 * Reads eProxy's error out of anything a client call threw: the ErrorInfo detail of the eProxy
 * domain, else the `x-eproxy-error` metadata older servers send. `undefined` when the error is not
 * a ConnectError or names no eProxy code (e.g. a network failure before eProxy answered).
 */
export function eproxyErrorOf(err: unknown): EproxyErrorDetails | undefined {
  if (err instanceof EproxyRelayError) {
    if (err.cause instanceof ConnectError) {
      const inner = eproxyErrorOf(err.cause);
      if (inner) return inner;
    }
    return {
      code: err.code,
      connectCode: CONNECT_CODES[err.code as EproxyErrorCode] ?? Code.Unknown,
      message: err.detail,
      ...(err.retryAfterSeconds !== undefined ? { retryAfterSeconds: err.retryAfterSeconds } : {}),
      metadata: {},
    };
  }
  if (!(err instanceof ConnectError)) return undefined;
  const info = err.findDetails(ErrorInfoSchema).find((d) => d.domain === EPROXY_ERROR_DOMAIN);
  const code = info?.reason ?? err.metadata.get("x-eproxy-error") ?? undefined;
  if (!code) return undefined;
  const metadata = { ...(info?.metadata ?? {}) };
  const retry = Number(metadata.retryAfterSeconds ?? err.metadata.get("retry-after") ?? Number.NaN);
  const localized = err.findDetails(LocalizedMessageSchema).find((m) => m.locale.startsWith("fr"));
  return {
    code,
    connectCode: err.code,
    message: err.rawMessage,
    ...(Number.isFinite(retry) ? { retryAfterSeconds: retry } : {}),
    ...(localized ? { localizedMessage: localized.message } : {}),
    metadata,
  };
}

/**
 * What `relaySoap` throws when eProxy itself refused or failed the call (session missing or expired,
 * limits, unknown service, teleservice unreachable or too slow, ...), by either path. A teleservice's
 * own answers, SOAP faults and HTTP 500 included, are never thrown: `relaySoap` returns them.
 *
 * On `/send`, eProxy's answers are the ones carrying the `x-eproxy-error` header (eProxy drops every
 * `x-eproxy-*` header of a teleservice's answer, so a teleservice cannot forge one); on ForwardSoap,
 * a ConnectError with eProxy's ErrorInfo (kept as `cause`).
 */
export class EproxyRelayError extends Error {
  /** eProxy's code (`SESSION_INVALID`, `TOO_MANY_REQUESTS`, `UPSTREAM_UNAVAILABLE`, ...). */
  readonly code: EproxyErrorCode | (string & {});
  /** HTTP status of eProxy's answer on `/send`; `undefined` through ForwardSoap. */
  readonly httpStatus: number | undefined;
  /** When the call may be retried, in seconds (`Retry-After`, ErrorInfo `retryAfterSeconds`). */
  readonly retryAfterSeconds: number | undefined;
  /** Which relay path was used. */
  readonly via: "send" | "forwardSoap";
  /** eProxy's explanation (the SOAP fault's reason on `/send`, the public message on ForwardSoap). */
  readonly detail: string;

  constructor(
    init: {
      code: string;
      message: string;
      via: "send" | "forwardSoap";
      httpStatus?: number | undefined;
      retryAfterSeconds?: number | undefined;
    },
    options?: { cause?: unknown },
  ) {
    super(
      `eProxy refused the relay: ${init.code}${init.httpStatus !== undefined ? ` (HTTP ${init.httpStatus})` : ""}${init.message ? `: ${init.message}` : ""}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "EproxyRelayError";
    this.code = init.code;
    this.httpStatus = init.httpStatus;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.via = init.via;
    this.detail = init.message;
  }
}

/** eProxy's code of an error (`SESSION_INVALID`, ...), or `undefined`. */
export function eproxyErrorCode(err: unknown): string | undefined {
  return eproxyErrorOf(err)?.code;
}

/** True when `err` is an eProxy error, with code `code` when one is given. */
export function isEproxyError(err: unknown, code?: EproxyErrorCode): boolean {
  const c = eproxyErrorCode(err);
  return c !== undefined && (code === undefined || c === code);
}

/** True for errors worth retrying later with the same input (eProxy or a dependency was unavailable). */
export function isRetryable(err: unknown): boolean {
  const e = eproxyErrorOf(err);
  if (e) {
    return [
      "TOO_MANY_REQUESTS",
      "PSC_UNAVAILABLE",
      "STORE_UNAVAILABLE",
      "UPSTREAM_UNAVAILABLE",
      "TOKEN_EXCHANGE_UNAVAILABLE",
      "UNAVAILABLE",
    ].includes(e.code);
  }
  return err instanceof ConnectError && err.code === Code.Unavailable;
}
