/**
 * Starts a real eProxy listener on port 0 with the shared test PKI, and builds clients for it.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { inject } from "vitest";
import { type Config, parseConfig } from "../../src/config.ts";
import { createDeps, type Deps } from "../../src/deps.ts";
import { createLogger } from "../../src/log.ts";
import { type EproxyServer, startServer } from "../../src/server.ts";

/** Paths of the shared test PKI. */
export function testPki() {
  const dir = inject("pkiDir");
  const client = (id: string) => ({
    certFile: path.join(dir, "clients", `${id}.pem`),
    keyFile: path.join(dir, "clients", `${id}-key.pem`),
  });
  return {
    dir,
    caFile: path.join(dir, "ca.pem"),
    ca: readFileSync(path.join(dir, "ca.pem"), "utf8"),
    serverCertFile: path.join(dir, "server.pem"),
    serverKeyFile: path.join(dir, "server-key.pem"),
    client,
  };
}

/** A minimal valid raw configuration on the test PKI, listening on port 0. */
export function baseRawConfig(): Record<string, unknown> {
  const pki = testPki();
  return {
    server: {
      listenAddress: "127.0.0.1",
      port: 0,
      tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCaFile: pki.caFile },
      shutdownGraceMs: 1_000,
    },
    psc: {
      discoveryUrl: "https://127.0.0.1:9/auth/realms/esante-wallet/.well-known/wallet-openid-configuration",
    },
    clients: [{ id: "lps-demo", ...pki.client("lps-demo") }],
    traces: (() => {
      const d = mkdtempSync(path.join(tmpdir(), "eproxy-traces-"));
      return { spoolFile: path.join(d, "spool.jsonl"), file: path.join(d, "traces.jsonl") };
    })(),
    log: { level: process.env.EPROXY_TEST_LOG ?? "silent" },
  };
}

/** A running test server with its dependencies. */
export interface TestServer {
  server: EproxyServer;
  deps: Deps;
  config: Readonly<Config>;
  url: string;
}

/** Starts eProxy with `raw` (defaults to baseRawConfig()). */
export async function startTestServer(raw: Record<string, unknown> = baseRawConfig()): Promise<TestServer> {
  const config = parseConfig(raw, {});
  const deps = await createDeps(config, createLogger(config.log.level));
  const server = await startServer(deps);
  return { server, deps, config, url: `https://127.0.0.1:${server.port}` };
}
