/**
 * The TLS peer of a request (verified client certificate CN), shared by the Connect services
 * (through context values) and the REST facade.
 */
import type { TLSSocket } from "node:tls";
import { createContextKey } from "@connectrpc/connect";
import type { CallerCredentials } from "../auth/callers.ts";
import { API_KEY_PREFIX } from "../auth/callers.ts";
import { SESSION_TOKEN_PREFIX } from "../auth/sessions.ts";

/** What the TLS layer tells about the peer. */
export interface Peer {
  /** CN of the client certificate, when the chain verified against the configured CA. */
  verifiedCertCn?: string;
  /** Remote address. */
  remoteAddress?: string;
}

/** Context key carrying the Peer into Connect handlers. */
export const kPeer = createContextKey<Peer>({}, { description: "TLS peer" });

/** Context key the RPC layer fills with the authenticated client id (for rejection traces). */
export const kCallerId = createContextKey<string>("", { description: "authenticated client id" });

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

/** Anything with case-insensitive header access. */
export interface HeaderSource {
  get(name: string): string | null;
}

function bearer(h: HeaderSource): string | undefined {
  const a = h.get("authorization");
  const m = a ? /^Bearer\s+(\S+)$/i.exec(a) : null;
  return m?.[1];
}

/** Extracts the caller's credentials: API key (dedicated header or `Bearer epk_…`) and certificate. */
export function credentialsOf(h: HeaderSource, peer: Peer): CallerCredentials {
  const b = bearer(h);
  const apiKey = h.get("x-eproxy-api-key") ?? (b?.startsWith(API_KEY_PREFIX) ? b : undefined);
  return {
    ...(apiKey ? { apiKey } : {}),
    ...(peer.verifiedCertCn ? { verifiedCertCn: peer.verifiedCertCn } : {}),
  };
}

/** Extracts a session token: explicit value, `x-eproxy-session`, or `Authorization: Bearer eps_…`. */
export function sessionTokenOf(h: HeaderSource, explicit?: string): string | undefined {
  if (explicit) return explicit;
  const header = h.get("x-eproxy-session");
  if (header) return header;
  const b = bearer(h);
  return b?.startsWith(SESSION_TOKEN_PREFIX) ? b : undefined;
}
