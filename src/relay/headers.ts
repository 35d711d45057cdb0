/**
 * Header rules of the relay (RFC 9110 §7.6.1): hop-by-hop fields, and every field named in
 * `Connection`, never cross the proxy; neither do the caller's credentials or eProxy's own headers
 * (`x-eproxy-*`, in either direction).
 */
import { EproxyError } from "../errors.ts";
import type { HeaderMap } from "./ports.ts";

/** RFC 9110 §5.1 field-name (token) and §5.5 field-value (no CR, LF or NUL; no other controls but tab). */
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the controls are what is refused
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** Fields of the caller never sent upstream. */
const CALLER_ONLY = new Set([
  "authorization",
  "cookie",
  "host",
  "x-api-key",
  "x-request-id",
  "forwarded",
  "x-forwarded-for",
  // eProxy answers `100 Continue` itself (RFC 9110 §10.1.1); undici refuses to send the field.
  "expect",
]);

/** Where the teleservice's own request id goes in the answer: `x-request-id` is eProxy's. */
export const UPSTREAM_REQUEST_ID = "x-upstream-request-id";

const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(h: HeaderMap): ReadonlySet<string> {
  const v = h.connection;
  if (v === undefined) return NO_TOKENS;
  const list = (Array.isArray(v) ? v.join(",") : v).split(",");
  return new Set(list.map((s) => s.trim().toLowerCase()).filter(Boolean));
}

function flatten(v: string | string[]): string {
  return Array.isArray(v) ? v.join(", ") : v;
}

/** The name in lower case; Node's header names already are (no copy then). */
export function lowerName(k: string): string {
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if (c >= 65 && c <= 90) return k.toLowerCase();
  }
  return k;
}

/** The caller's headers as they may go upstream. */
export function toUpstreamHeaders(h: HeaderMap): Record<string, string> {
  const named = connectionTokens(h);
  const out: Record<string, string> = {};
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    const name = lowerName(k);
    if (name.startsWith(":") || HOP_BY_HOP.has(name) || named.has(name)) continue;
    if (CALLER_ONLY.has(name) || name.startsWith("x-eproxy-")) continue;
    const value = flatten(v);
    // HTTP/1.1 and HTTP/2 callers were checked by Node; ForwardSoap's headers come from a message.
    if (!FIELD_NAME.test(name) || BAD_VALUE.test(value)) {
      throw new EproxyError("INVALID_ARGUMENT", `invalid header ${JSON.stringify(name.slice(0, 64))}`);
    }
    out[name] = value;
  }
  return out;
}

/** The upstream's headers as they may go back to the caller. */
export function toDownstreamHeaders(
  h: HeaderMap,
  exposeCorrelationId: boolean,
): Record<string, string | string[]> {
  const named = connectionTokens(h);
  const out: Record<string, string | string[]> = {};
  for (const k in h) {
    const v = h[k];
    if (v === undefined) continue;
    const name = lowerName(k);
    if (name.startsWith(":") || HOP_BY_HOP.has(name) || named.has(name)) continue;
    // eProxy's own headers (`x-eproxy-error` marks eProxy's answers) never come from a teleservice.
    if (name.startsWith("x-eproxy-")) continue;
    // Correlation ids are for the services, not for the end user's software (trust-space rule).
    if (name === "x-correlation-id" && !exposeCorrelationId) continue;
    out[name === "x-request-id" ? UPSTREAM_REQUEST_ID : name] = v;
  }
  return out;
}
