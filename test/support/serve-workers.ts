/**
 * `eproxy serve` with `server.workers: 2` and sessions in Redis, started by the real CLI on the test
 * PKI (the metrics-workers and traces-workers tests), and a GET on a new connection each time.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { type CliProcess, freePort, startCli } from "./cli.ts";
import { testPki } from "./server.ts";

/** A running two-worker eProxy. */
export interface WorkersServe {
  process: CliProcess;
  /** `https://127.0.0.1:<port>`. */
  base: string;
  pki: ReturnType<typeof testPki>;
}

/**
 * Writes the configuration (two workers, Redis sessions under a fresh `keyPrefix`, no MongoDB, a
 * dead PSC) plus the top-level `extra` lines (`admin: ...`, `clients: ...`), starts `eproxy serve`
 * and resolves once both workers listen. `started` receives the process before it is awaited, so
 * that the caller's afterAll stops it even when the start fails.
 */
export async function startServeWithWorkers(opts: {
  redisUrl: string;
  /** Prefix of the temporary directory and of the Redis keys. */
  name: string;
  extra?: string[];
  started: (p: CliProcess) => void;
}): Promise<WorkersServe> {
  const pki = testPki();
  const dir = mkdtempSync(path.join(tmpdir(), `eproxy-${opts.name}-`));
  const port = await freePort();
  writeFileSync(path.join(dir, "k1"), randomBytes(32).toString("base64"));
  const file = path.join(dir, "eproxy.yaml");
  const keyPrefix = `${opts.name}${randomBytes(3).toString("hex")}:`;
  writeFileSync(
    file,
    [
      "server:",
      "  listenAddress: 127.0.0.1",
      `  port: ${port}`,
      "  workers: 2",
      "  shutdownGraceMs: 1000",
      `  tls: {certFile: ${pki.serverCertFile}, keyFile: ${pki.serverKeyFile}}`,
      ...(opts.extra ?? []),
      "psc:",
      "  discoveryUrl: https://127.0.0.1:9/.well-known/wallet-openid-configuration",
      "stores:",
      `  sessions: {kind: redis, url: "${opts.redisUrl}", keyPrefix: "${keyPrefix}"}`,
      "  encryption: {keys: [{id: k1, file: k1}], activeKeyId: k1}",
      `stateDir: ${path.join(dir, "state")}`,
    ].join("\n"),
  );
  const p = startCli(["serve", "--config", file]);
  opts.started(p);
  // Both workers listening (each logs it).
  await p.waitFor(/eProxy listening[\s\S]*eProxy listening/);
  return { process: p, base: `https://127.0.0.1:${port}`, pki };
}

/** A GET on a new connection each time, so that the primary hands the connections to both workers. */
export function getFresh(
  url: string,
  ca: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, agent: false, headers }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}
