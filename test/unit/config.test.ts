import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseConfig } from "../../src/config.ts";

const valid = {
  server: { tls: { certFile: "server.pem", keyFile: "server-key.pem" } },
  psc: {
    discoveryUrl:
      "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet/.well-known/wallet-openid-configuration",
  },
  clients: [{ id: "lps-demo", certFile: "c.pem", keyFile: "k.pem", allowedServices: ["insi"] }],
  teleservices: [{ name: "insi", upstreamUrl: "https://services-ps.ameli.fr/lps" }],
};

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  it("applies defaults, resolves files against the config directory, and freezes", () => {
    const c = parseConfig(valid, {}, "/etc/eproxy");
    expect(c.server.port).toBe(8443);
    expect(c.server.tls.certFile).toBe("/etc/eproxy/server.pem");
    expect(c.clients[0]?.authMethod).toBe("tls_client_auth");
    expect(c.teleservices[0]?.maxBodyBytes).toBe(64 * 1024 * 1024);
    expect(c.sessions.idleSeconds).toBe(1800);
    expect(c.stores.sessions.kind).toBe("memory");
    expect(c.server.http2).toEqual({
      streamWindowBytes: 1024 * 1024,
      connectionWindowBytes: 8 * 1024 * 1024,
    });
    expect(Object.isFrozen(c.server.tls)).toBe(true);
    expect(() => {
      (c.server as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it("names the faulty key and the reason", () => {
    const bad = structuredClone(valid) as Record<string, any>;
    bad.server.port = "eighty";
    bad.psc.discoveryUrl = "not a url";
    const msg = errorOf(() => parseConfig(bad, {}));
    expect(msg).toMatch(/server\.port: .*number/i);
    expect(msg).toMatch(/psc\.discoveryUrl: .*url/i);
  });

  it("refuses unknown keys, naming them", () => {
    const bad = structuredClone(valid) as Record<string, any>;
    bad.server.prot = 1;
    expect(errorOf(() => parseConfig(bad, {}))).toMatch(/server: .*"prot"/);
  });

  it("checks cross-field rules with the exact path", () => {
    const bad = structuredClone(valid) as Record<string, any>;
    bad.clients[0].allowedServices = ["dmp"];
    bad.clients[0].apiKeyHashes = ["plain-text-key"];
    delete bad.clients[0].keyFile;
    const msg = errorOf(() => parseConfig(bad, {}));
    expect(msg).toContain("clients[0].allowedServices[0]: unknown teleservice dmp");
    expect(msg).toContain("clients[0].apiKeyHashes[0]: must be 'sha256:'");
    expect(msg).toContain("clients[0].certFile: certFile and keyFile go together");
  });

  it("takes secrets and URLs from the environment", () => {
    const withKeys = {
      ...valid,
      stores: { encryption: { keys: [{ id: "k1", env: "EPROXY_KEY_K1" }], activeKeyId: "k1" } },
    };
    const c = parseConfig(withKeys, {
      EPROXY_PORT: "9443",
      EPROXY_REDIS_URL: "rediss://user:pw@redis:6380",
      EPROXY_MONGODB_URL: "mongodb://mongo:27017/eproxy",
    });
    expect(c.server.port).toBe(9443);
    expect(c.stores.sessions).toMatchObject({ kind: "redis", url: "rediss://user:pw@redis:6380" });
    expect(c.stores.mongodbUrl).toBe("mongodb://mongo:27017/eproxy");
  });

  it("refuses Redis sessions without an encryption key ring, and a key ring without its active key", () => {
    expect(errorOf(() => parseConfig(valid, { EPROXY_REDIS_URL: "redis://r:6379" }))).toContain(
      "stores.encryption: required when sessions are in Redis",
    );
    const badRing = {
      ...valid,
      stores: { encryption: { keys: [{ id: "k1", file: "k1.key", env: "X" }], activeKeyId: "k2" } },
    };
    const msg = errorOf(() => parseConfig(badRing, {}));
    expect(msg).toContain("stores.encryption.keys[0]: give exactly one of file or env");
    expect(msg).toContain("stores.encryption.activeKeyId: activeKeyId must name one of keys");
  });

  it("refuses session lifetimes longer than PSC's", () => {
    expect(errorOf(() => parseConfig({ ...valid, sessions: { absoluteSeconds: 5 * 3600 } }, {}))).toMatch(
      /sessions\.absoluteSeconds/,
    );
  });

  it("reports unreadable and non-YAML files clearly", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-config-"));
    expect(errorOf(() => loadConfig(path.join(dir, "missing.yaml"), {}))).toMatch(
      /cannot read configuration file .*ENOENT/,
    );
    const f = path.join(dir, "bad.yaml");
    writeFileSync(f, "server: [unclosed");
    expect(errorOf(() => loadConfig(f, {}))).toMatch(/not valid YAML/);
    expect(errorOf(() => loadConfig(undefined, {}))).toMatch(/--config FILE or set EPROXY_CONFIG/);
  });

  it("validates the documented example file", () => {
    const c = loadConfig(path.resolve("eproxy.example.yaml"), {});
    expect(c.clients.length).toBeGreaterThan(0);
    expect(c.teleservices.map((t) => t.name)).toContain("insi");
  });
});
