/**
 * `eproxy serve` with `server.workers: 2`, sessions in Redis and no MongoDB: the workers hand their
 * traces to the primary, so a client's trace query answers every trace it caused, whichever worker
 * served the call and whichever worker serves the query.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createApiKey } from "../../src/auth/api-keys.ts";
import { type CliProcess, freePort, startCli } from "../support/cli.ts";
import { testPki } from "../support/server.ts";

const redisUrl = inject("redisUrl");
let p: CliProcess | undefined;

afterAll(async () => {
  if (p && p.child.exitCode === null) {
    p.child.kill("SIGTERM");
    await p.exited;
  }
});

function get(url: string, ca: string, key: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A new connection each time, so that the primary hands them to both workers.
    https
      .get(url, { ca, agent: false, headers: { "x-eproxy-api-key": key } }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

describe.skipIf(!redisUrl)("traces with server.workers and no MongoDB", () => {
  it("every query, on either worker, sees every trace of the client", async () => {
    const pki = testPki();
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-traces-workers-"));
    const port = await freePort();
    const api = createApiKey();
    writeFileSync(path.join(dir, "k1"), randomBytes(32).toString("base64"));
    const client = pki.client("lps-demo");
    const file = path.join(dir, "eproxy.yaml");
    writeFileSync(
      file,
      [
        "server:",
        "  listenAddress: 127.0.0.1",
        `  port: ${port}`,
        "  workers: 2",
        "  shutdownGraceMs: 1000",
        `  tls: {certFile: ${pki.serverCertFile}, keyFile: ${pki.serverKeyFile}}`,
        "psc:",
        "  discoveryUrl: https://127.0.0.1:9/.well-known/wallet-openid-configuration",
        "clients:",
        `  - {id: lps-demo, certFile: ${client.certFile}, keyFile: ${client.keyFile}, apiKeyHashes: ["${api.hash}"]}`,
        "stores:",
        `  sessions: {kind: redis, url: "${redisUrl}", keyPrefix: "tw${randomBytes(3).toString("hex")}:"}`,
        "  encryption: {keys: [{id: k1, file: k1}], activeKeyId: k1}",
        `stateDir: ${path.join(dir, "state")}`,
      ].join("\n"),
    );
    p = startCli(["serve", "--config", file]);
    await p.waitFor(/eProxy listening[\s\S]*eProxy listening/);
    const base = `https://127.0.0.1:${port}`;
    const from = new Date(Date.now() - 60_000).toISOString();
    // Each refused query (no range) records one REJECTED trace of lps-demo, on the worker serving it.
    const n = 20;
    for (let i = 0; i < n; i++) {
      expect((await get(`${base}/traces?pageSize=${i + 1}`, pki.ca, api.key)).status).toBe(400);
    }
    const to = new Date(Date.now() + 60_000).toISOString();
    const writers = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const res = await get(`${base}/traces?start=${from}&end=${to}&pageSize=1000`, pki.ca, api.key);
      expect(res.status).toBe(200);
      const traces = JSON.parse(res.body) as Array<{ type: string; clientId: string; writerId: string }>;
      const mine = traces.filter((t) => t.type === "REJECTED" && t.clientId === "lps-demo");
      expect(mine).toHaveLength(n);
      for (const t of mine) writers.add(t.writerId);
    }
    // Both workers recorded some (each writes its own chain), else the test proves nothing.
    expect(writers.size).toBe(2);
    const ready = await get(`${base}/readyz`, pki.ca, api.key);
    // Sessions shared, traces in one host: said in readiness.
    expect(JSON.parse(ready.body)).toMatchObject({ status: "degraded", checks: { traceRecord: "degraded" } });
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }, 60_000);
});
