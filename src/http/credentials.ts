/**
 * The caller's credentials as a request carries them, for every transport (Connect handlers and the
 * REST facade read the same headers and the same TLS peer): an API key, a verified client
 * certificate, a session token. No Connect import here, so that `rest/` and `rpc/` both use it
 * without depending on each other.
 */
import type { TLSSocket } from "node:tls";
import { API_KEY_PREFIX, type CallerCredentials } from "../auth/callers.ts";
import { SESSION_TOKEN_PREFIX } from "../auth/sessions.ts";

/** What the TLS layer tells about the peer. */
export interface Peer {
  /** CN of the client certificate, when the chain verified against the configured CA. */
  verifiedCertCn?: string;
  /** Remote address. */
  remoteAddress?: string;
}

/** Reads the peer of a Node request (HTTP/1.1 socket or HTTP/2 session socket). */
export function peerOf(req: { socket: unknown }): Peer {
  const socket = req.socket as TLSSocket | undefined;
  const peer: Peer = {};
  if (socket?.remoteAddress) peer.remoteAddress = socket.remoteAddress;
  if (socket?.authorized) {
    const cn = socket.getPeerCertificate?.()?.subject?.CN;
    if (typeof cn === "string" && cn) peer.verifiedCertCn = cn;
  }
  return peer;
}

/** Anything with case-insensitive header access (the Fetch `Headers` a Connect handler gets is one). */
export interface HeaderSource {
  get(name: string): string | null;
}

/** Node's header object read case-insensitively (one small object per call, no closure). */
class NodeHeaders implements HeaderSource {
  readonly #headers: Record<string, string | string[] | undefined>;
  constructor(headers: Record<string, string | string[] | undefined>) {
    this.#headers = headers;
  }
  get(name: string): string | null {
    const v = this.#headers[name.toLowerCase()];
    return Array.isArray(v) ? (v[0] ?? null) : (v ?? null);
  }
}

/** Case-insensitive header access on Node's header object (the first value of a repeated header). */
export function headersOf(req: { headers: Record<string, string | string[] | undefined> }): HeaderSource {
  return new NodeHeaders(req.headers);
}

function bearer(h: HeaderSource): string | undefined {
  const a = h.get("authorization");
  const m = a ? /^Bearer\s+(\S+)$/i.exec(a) : null;
  return m?.[1];
}

/** Extracts the caller's credentials: API key (dedicated header or `Bearer epk_…`) and certificate. */
export function credentialsOf(h: HeaderSource, peer: Peer | undefined): CallerCredentials {
  const b = bearer(h);
  const apiKey = h.get("x-eproxy-api-key") ?? (b?.startsWith(API_KEY_PREFIX) ? b : undefined);
  const creds: CallerCredentials = {};
  if (apiKey) creds.apiKey = apiKey;
  if (peer?.verifiedCertCn) creds.verifiedCertCn = peer.verifiedCertCn;
  return creds;
}

/** Extracts a session token: explicit value, `x-eproxy-session`, or `Authorization: Bearer eps_…`. */
export function sessionTokenOf(h: HeaderSource, explicit?: string): string | undefined {
  if (explicit) return explicit;
  const header = h.get("x-eproxy-session");
  if (header) return header;
  const b = bearer(h);
  return b?.startsWith(SESSION_TOKEN_PREFIX) ? b : undefined;
}
