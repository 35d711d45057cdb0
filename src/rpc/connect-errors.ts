import { Code, ConnectError } from "@connectrpc/connect";
import { type ErrorCode, retryAfterHeader, toEproxyError } from "../errors.ts";

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
  UPSTREAM_TIMEOUT: Code.DeadlineExceeded,
  UPSTREAM_BAD_RESPONSE: Code.Unavailable,
  UNAVAILABLE: Code.Unavailable,
  INTERNAL: Code.Internal,
};

/**
 * Maps any thrown value to a ConnectError carrying only the public message; the eProxy code is
 * sent as the `x-eproxy-error` trailer-safe metadata so clients can branch on it.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = toEproxyError(err);
  return new ConnectError(e.message, CONNECT_CODES[e.code], {
    "x-eproxy-error": e.code,
    ...retryAfterHeader(e),
  });
}
