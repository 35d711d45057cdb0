import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createApiKey, hashApiKey, matchesApiKey } from "../../src/auth/api-keys.ts";
import { hashToken } from "../../src/auth/sessions.ts";

describe("API keys", () => {
  it("are random, hashed, and matched only by the right key", () => {
    const a = createApiKey();
    const b = createApiKey();
    expect(a.key).not.toBe(b.key);
    expect(a.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(a.hash).toBe(hashApiKey(a.key));
    expect(matchesApiKey(a.key, [b.hash, a.hash])).toBe(true);
    expect(matchesApiKey(b.key, [a.hash])).toBe(false);
    expect(matchesApiKey(a.key, [])).toBe(false);
    expect(matchesApiKey(`${a.key}x`, [a.hash])).toBe(false);
  });

  it.each(["epk_abc", "eps_tls.x.y", "é🚑 non-ASCII", ""])(
    "hash %j as the SHA-256 of its UTF-8 bytes (one-shot crypto.hash, same digests as before)",
    (key) => {
      const hex = createHash("sha256").update(key, "utf8").digest("hex");
      expect(hashApiKey(key)).toBe(`sha256:${hex}`);
      expect(hashToken(key)).toBe(hex);
    },
  );
});
