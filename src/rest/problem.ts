import { ERROR_CODES, type ErrorCode, retryAfterHeader, toEproxyError } from "../errors.ts";
import { type NodeResponse, writeHead } from "./respond.ts";

/** An RFC 9457 problem document as eProxy emits it. */
export interface Problem {
  /** URI naming the problem type: `urn:eproxy:error:<code>`. */
  type: string;
  /** Short summary of the problem type. */
  title: string;
  /** HTTP status code. */
  status: number;
  /** Public explanation of this occurrence. */
  detail: string;
  /** eProxy error code (closed set): the same value as ErrorInfo.reason on Connect and gRPC. */
  code: ErrorCode;
  /** Request id, to find the matching log lines. */
  requestId?: string;
}

const TITLES: Record<ErrorCode, string> = {
  INVALID_ARGUMENT: "Invalid request",
  UNAUTHENTICATED: "Caller not authenticated",
  SESSION_INVALID: "Session missing, unknown or expired",
  REAUTHENTICATION_REQUIRED: "Re-authentication required",
  PERMISSION_DENIED: "Permission denied",
  AUTHENTICATION_DENIED: "Authentication refused by the professional",
  AUTHENTICATION_EXPIRED: "Authentication not approved in time",
  NOT_FOUND: "Not found",
  METHOD_NOT_ALLOWED: "Method not allowed",
  CONFLICT: "Conflict",
  PAYLOAD_TOO_LARGE: "Payload too large",
  TOO_MANY_REQUESTS: "Too many requests",
  NOT_IMPLEMENTED: "Not implemented",
  PSC_UNAVAILABLE: "Pro Santé Connect unavailable",
  STORE_UNAVAILABLE: "Session store unavailable",
  UPSTREAM_UNAVAILABLE: "Teleservice unreachable",
  TOKEN_EXCHANGE_UNAVAILABLE: "Token exchange unavailable (teleservice authorization server)",
  UPSTREAM_TIMEOUT: "Teleservice timeout",
  UPSTREAM_BAD_RESPONSE: "Bad answer from teleservice",
  UNAVAILABLE: "Service unavailable",
  INTERNAL: "Internal error",
};

/** Maps any thrown value to an RFC 9457 problem document (unknown errors become INTERNAL). */
export function toProblem(err: unknown, requestId?: string): Problem {
  const e = toEproxyError(err);
  return {
    type: `urn:eproxy:error:${e.code.toLowerCase().replaceAll("_", "-")}`,
    title: TITLES[e.code],
    status: ERROR_CODES[e.code].status,
    detail: e.message,
    code: e.code,
    ...(requestId ? { requestId } : {}),
  };
}

/** Writes a problem document as `application/problem+json`. */
export function sendProblem(
  res: NodeResponse,
  err: unknown,
  requestId?: string,
  extraHeaders: Record<string, string> = {},
): Problem {
  const problem = toProblem(err, requestId);
  const body = JSON.stringify(problem);
  if (!res.headersSent) {
    writeHead(res, problem.status, {
      ...retryAfterHeader(err),
      ...extraHeaders,
      "x-eproxy-error": problem.code,
      "content-type": "application/problem+json",
      "content-length": Buffer.byteLength(body),
      "cache-control": "no-store",
    });
  }
  res.end(body);
  return problem;
}
