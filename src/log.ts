/**
 * Structured JSON logging (pino) with a request id on every line emitted while a request is being
 * served, and redaction of credentials wherever they might appear.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { type Logger, pino } from "pino";

/** Per-request context carried through async calls. */
export interface RequestContext {
  /** Request id (from a safe `x-request-id` header or generated). */
  requestId: string;
  /** Caller IP (X-Forwarded-For only from trusted proxies), for traces. */
  callerIp?: string;
}

/** The async context of the request being served, if any. */
export const requestContext = new AsyncLocalStorage<RequestContext>();

const SECRET_KEYS = [
  "authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  "x-eproxy-api-key",
  "x-eproxy-session",
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "refresh_token",
  "idToken",
  "id_token",
  "sessionToken",
  "session_token",
  "apiKey",
  "clientSecret",
  "client_secret",
  "password",
  "passphrase",
  "key",
  "privateKey",
  "code",
  "code_verifier",
  "subject_token",
];

/** Paths pino redacts (top level, one and two levels deep). */
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => {
  const ident = /^[A-Za-z_$][\w$]*$/.test(k);
  const q = ident ? `.${k}` : `["${k}"]`;
  return ident ? [k, `*${q}`, `*.*${q}`] : [`*${q}`, `*.*${q}`];
});

/** Creates the root logger; every line carries the current request id when there is one. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: "eproxy" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      mixin: () => {
        const ctx = requestContext.getStore();
        return ctx ? { requestId: ctx.requestId } : {};
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as pino.DestinationStream | undefined,
  );
}
