/**
 * Backend API keys: 256 random bits, stored only as `sha256:<hex>` hashes and compared in
 * constant time. A fast hash is right here: the keys are random, not human passwords.
 */
import { hash, randomBytes, timingSafeEqual } from "node:crypto";

/** Hash of an API key in the configuration format. */
export function hashApiKey(key: string): string {
  return `sha256:${hash("sha256", key, "hex")}`;
}

/** A new API key and its hash. */
export function createApiKey(): { key: string; hash: string } {
  const key = `epk_${randomBytes(32).toString("base64url")}`;
  return { key, hash: hashApiKey(key) };
}

/** True when `key` hashes to one of `hashes`; every hash is compared, in constant time. */
export function matchesApiKey(key: string, hashes: readonly string[]): boolean {
  return matchesApiKeyHash(hashApiKey(key), hashes);
}

/** Like matchesApiKey, for a key already hashed (hash once, compare with every client). */
export function matchesApiKeyHash(hash: string, hashes: readonly string[]): boolean {
  const candidate = Buffer.from(hash);
  let found = false;
  for (const h of hashes) {
    const b = Buffer.from(h);
    if (b.length === candidate.length && timingSafeEqual(b, candidate)) found = true;
  }
  return found;
}
