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

/** What an eProxy error says, read from a ConnectError. */
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
