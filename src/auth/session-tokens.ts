/**
 * Session bearers that eProxy can recognise as its own without reading the store:
 * `eps_<key id>.<issued at, base36 seconds>.<32 random bytes>.<HMAC-SHA256, 16 bytes>`, all
 * base64url but the time. A token whose MAC does not verify is forged (or from a retired key) and
 * is refused at once; a token that verifies but has no session tells a lost session (the store was
 * flushed after the token was issued) from an ended one.
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from "node:crypto";

/** Prefix of session tokens, so that a bearer is recognisable (and never confused with an API key). */
export const SESSION_TOKEN_PREFIX = "eps_";

/** Keys that sign session tokens: the active one signs, every listed one verifies. */
export interface SessionTokenKeys {
  activeKeyId: string;
  keys: ReadonlyMap<string, Buffer>;
}

/** What a verified token says about itself. */
export interface VerifiedToken {
  /** Issue time, ms since the epoch (second precision). */
  issuedAt: number;
}

/** Issues and verifies session tokens. */
export interface SessionTokens {
  issue(now: number): string;
  /** Undefined when the token is malformed, forged or signed with an unknown key. */
  verify(token: string): VerifiedToken | undefined;
}

const KID = /^[\w-]{1,32}$/;

/** Creates the token codec over a set of MAC keys. */
export function createSessionTokens(k: SessionTokenKeys): SessionTokens {
  const active = k.keys.get(k.activeKeyId);
  if (!active) throw new Error(`session token key ${k.activeKeyId} missing`);
  if (!KID.test(k.activeKeyId)) throw new Error("session token key id must match [\\w-]{1,32}");
  // KeyObjects once: a raw Buffer key is re-imported by every HMAC (measured 3-5× the MAC's cost).
  const macKeys = new Map<string, KeyObject>([...k.keys].map(([id, b]) => [id, createSecretKey(b)]));
  const mac = (key: KeyObject, body: string) =>
    createHmac("sha256", key).update(body).digest().subarray(0, 16);
  return {
    issue(now) {
      const body = `${SESSION_TOKEN_PREFIX}${k.activeKeyId}.${Math.floor(now / 1000).toString(36)}.${randomBytes(32).toString("base64url")}`;
      return `${body}.${mac(macKeys.get(k.activeKeyId) as KeyObject, body).toString("base64url")}`;
    },
    verify(token) {
      if (token.length > 200 || !token.startsWith(SESSION_TOKEN_PREFIX)) return undefined;
      const dot = token.lastIndexOf(".");
      const body = token.slice(0, dot);
      const parts = body.slice(SESSION_TOKEN_PREFIX.length).split(".");
      if (dot < 0 || parts.length !== 3) return undefined;
      const [kid, iat] = parts as [string, string, string];
      const key = macKeys.get(kid);
      if (!key || !/^[0-9a-z]{1,10}$/.test(iat)) return undefined;
      const given = Buffer.from(token.slice(dot + 1), "base64url");
      const want = mac(key, body);
      if (given.length !== want.length || !timingSafeEqual(given, want)) return undefined;
      return { issuedAt: Number.parseInt(iat, 36) * 1000 };
    },
  };
}
