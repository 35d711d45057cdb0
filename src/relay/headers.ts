/**
 * Header rules of the relay (RFC 9110 §7.6.1): hop-by-hop fields, and every field named in
 * `Connection`, never cross the proxy; neither do the caller's credentials or eProxy's own headers.
 */
import type { HeaderMap } from "./ports.ts";

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
]);

function connectionTokens(h: HeaderMap): Set<string> {
  const v = h.connection;
  const list = (Array.isArray(v) ? v.join(",") : (v ?? "")).split(",");
  return new Set(list.map((s) => s.trim().toLowerCase()).filter(Boolean));
}

function flatten(v: string | string[]): string {
  return Array.isArray(v) ? v.join(", ") : v;
}

/** The caller's headers as they may go upstream. */
export function toUpstreamHeaders(h: HeaderMap): Record<string, string> {
  const named = connectionTokens(h);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    const name = k.toLowerCase();
    if (v === undefined || name.startsWith(":") || HOP_BY_HOP.has(name) || named.has(name)) continue;
    if (CALLER_ONLY.has(name) || name.startsWith("x-eproxy-")) continue;
    out[name] = flatten(v);
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
  for (const [k, v] of Object.entries(h)) {
    const name = k.toLowerCase();
    if (v === undefined || name.startsWith(":") || HOP_BY_HOP.has(name) || named.has(name)) continue;
    // Correlation ids are for the services, not for the end user's software (trust-space rule).
    if (name === "x-correlation-id" && !exposeCorrelationId) continue;
    out[name] = v;
  }
  return out;
}
