import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * Requirement 117: no connection secret in the source. What ships or deploys (the code, the CLI,
 * the scripts, the deployment kit, the examples, the client package) holds no private key, no
 * eProxy API key or session token, no password in a configuration file and no URL with
 * credentials: they come from files or the environment (`*File`, `*_FILE`, Kubernetes Secrets).
 * Tests and the development PKI (generated at run time, never committed) are outside this scope.
 */
const SCOPE = [
  "src",
  "bin",
  "scripts",
  "deploy",
  "examples",
  "packages/client/src",
  "eproxy.example.yaml",
  "docker-compose.yml",
  "Dockerfile",
];
const SKIP_DIRS = new Set(["node_modules", "target", "build", "dist", ".gradle", "gen"]);
const TEXT = /\.(ts|js|mjs|cjs|json|ya?ml|sh|java|kt|xml|properties|md|conf|env|tpl|txt)$|Dockerfile$/;

function files(p: string): string[] {
  if (!statSync(p, { throwIfNoEntry: false })) return [];
  if (statSync(p).isFile()) return [p];
  return readdirSync(p, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? (SKIP_DIRS.has(d.name) ? [] : files(path.join(p, d.name))) : [path.join(p, d.name)],
  );
}

// Documentation examples say so (`eps_…EXAMPLE…`, `PASSWORD`): they are not secrets.
const RULES: Array<{ what: string; re: RegExp; only?: RegExp }> = [
  { what: "a PEM private key", re: /-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----/ },
  { what: "an eProxy API key", re: /\bepk_(?![\w-]*EXAMPLE)[\w-]{30,}/ },
  { what: "an eProxy session token", re: /\beps_(?![\w-]*EXAMPLE)[\w-]{30,}/ },
  {
    what: "a URL with a password",
    re: /\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@"'`]+:(?![A-Z_]+@)[^/\s@"'`$<{]{3,}@/,
  },
  {
    what: "a password or secret written in a configuration file",
    // `clientSecret: s3cr3t`; not `clientSecretFile: /run/secrets/x`, `X_PASSWORD_FILE: ...`,
    // `secretName: {{ ... }}` (a reference) nor a value from the environment.
    re: /^[ \t]*[\w-]*(?:secret|password|passphrase)(?![\w-]*file\b)[\w-]*[ \t]*:[ \t]*["']?(?![{$</])[^\s"'#]{6,}/im,
    only: /\.(ya?ml|properties|env|conf)$/,
  },
];

describe("no connection secret in the source (requirement 117)", () => {
  const scanned = SCOPE.flatMap(files).filter((f) => TEXT.test(f));

  it("scans the shipped and deployed files", () => {
    expect(scanned.length).toBeGreaterThan(50);
    expect(scanned).toContain(path.join("src", "config.ts"));
  });

  it("finds no private key, API key, session token, password or credentialed URL in them", () => {
    const found: string[] = [];
    for (const file of scanned) {
      const text = readFileSync(file, "utf8");
      for (const rule of RULES) {
        if (rule.only && !rule.only.test(file)) continue;
        const m = rule.re.exec(text);
        if (m) found.push(`${file}: ${rule.what} (${m[0].trim().slice(0, 40)}…)`);
      }
    }
    expect(found).toEqual([]);
  });

  it("would see one (the rules are not blind)", () => {
    const key = ["-----BEGIN", "PRIVATE KEY-----"].join(" ");
    expect(RULES[0]?.re.test(key)).toBe(true);
    expect(RULES[3]?.re.test("redis://eproxy:hunter22@redis:6379")).toBe(true);
    expect(RULES[3]?.re.test("redis://redis:6379")).toBe(false);
    expect(RULES[4]?.re.test("  clientSecret: s3cr3t-value")).toBe(true);
    expect(RULES[4]?.re.test("  clientSecretFile: /run/secrets/psc")).toBe(false);
    expect(RULES[4]?.re.test('  secretName: {{ include "x" . }}')).toBe(false);
  });
});
