/**
 * eProxy errors on Connect/gRPC: the Connect code, the public message, and the details every client
 * can decode without eProxy's own types — `google.rpc.ErrorInfo` (reason = eProxy's code, domain
 * `eproxy.fr`, metadata `retryAfterSeconds`), `google.rpc.LocalizedMessage` (French text for the end
 * user) and, when the call may be retried later, `google.rpc.RetryInfo`.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ErrorInfoSchema,
  LocalizedMessageSchema,
  RetryInfoSchema,
} from "../../gen/google/rpc/error_details_pb.ts";
import { ERROR_CODES, ERROR_DOMAIN, type ErrorCode, retryAfterHeader, toEproxyError } from "../errors.ts";

const CONNECT_CODES: Record<ErrorCode, Code> = {
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

/** The Connect code eProxy answers for each of its codes. */
export function connectCodeOf(code: ErrorCode): Code {
  return CONNECT_CODES[code];
}

/**
 * eProxy's code for a ConnectError raised by the Connect runtime itself (a message over the size
 * limit, a malformed message, a deadline), so that those carry an ErrorInfo too.
 */
const FROM_CONNECT: Partial<Record<Code, ErrorCode>> = {
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.ResourceExhausted]: "PAYLOAD_TOO_LARGE",
  [Code.Unimplemented]: "NOT_IMPLEMENTED",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.Unavailable]: "UNAVAILABLE",
};

function details(code: ErrorCode, retryAfterSeconds: number | undefined) {
  const retry = retryAfterSeconds === undefined ? undefined : Math.max(1, Math.ceil(retryAfterSeconds));
  return [
    {
      desc: ErrorInfoSchema,
      value: {
        reason: code,
        domain: ERROR_DOMAIN,
        metadata: retry === undefined ? {} : { retryAfterSeconds: String(retry) },
      },
    },
    { desc: LocalizedMessageSchema, value: { locale: "fr-FR", message: ERROR_CODES[code].fr } },
    ...(retry === undefined
      ? []
      : [{ desc: RetryInfoSchema, value: { retryDelay: { seconds: BigInt(retry) } } }]),
  ];
}

/**
 * Maps any thrown value to a ConnectError carrying only the public message and eProxy's code, as an
 * ErrorInfo detail and (for older clients) the `x-eproxy-error` metadata. A ConnectError from the
 * runtime keeps its code and message and gains the matching ErrorInfo.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) {
    const code = FROM_CONNECT[err.code];
    // Already described, or a cancellation/deadline of the caller's own making: left as it is.
    if (err.details.length > 0 || code === undefined) return err;
    err.metadata.set("x-eproxy-error", code);
    err.details.push(...details(code, undefined));
    return err;
  }
  const e = toEproxyError(err);
  return new ConnectError(
    e.message,
    CONNECT_CODES[e.code],
    { "x-eproxy-error": e.code, ...retryAfterHeader(e) },
    details(e.code, e.retryAfterSeconds),
  );
}
