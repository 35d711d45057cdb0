/**
 * `eproxy serve` with `server.workers: 2` (sessions in Redis) and the admin listener: the primary
 * serves one /metrics that sums both workers' registries, and Prometheus's linter accepts it.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import https from "node:https";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { type CliProcess, freePort, startCli } from "../support/cli.ts";
import { testPki } from "../support/server.ts";

const redisUrl = inject("redisUrl");
const promtool = [path.join(homedir(), "go/bin/promtool")].find((p) => existsSync(p));
let p: CliProcess | undefined;

afterAll(async () => {
  if (p && p.child.exitCode === null) {
    p.child.kill("SIGTERM");
    await p.exited;
  }
});

function get(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    // A new connection each time, so that the primary hands them to both workers.
    https
      .get(url, { ca, agent: false }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      })
      .on("error", reject);
  });
}

describe.skipIf(!redisUrl)("metrics with server.workers", () => {
  it("one scrape on the primary sums the workers, promtool-clean", async () => {
    const pki = testPki();
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-workers-"));
    const [port, adminPort] = [await freePort(), await freePort()];
    writeFileSync(path.join(dir, "k1"), randomBytes(32).toString("base64"));
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
        `admin: {listenAddress: 127.0.0.1, port: ${adminPort}}`,
        "psc:",
        "  discoveryUrl: https://127.0.0.1:9/.well-known/wallet-openid-configuration",
        "stores:",
        `  sessions: {kind: redis, url: "${redisUrl}", keyPrefix: "w${randomBytes(3).toString("hex")}:"}`,
        "  encryption: {keys: [{id: k1, file: k1}], activeKeyId: k1}",
        `stateDir: ${path.join(dir, "state")}`,
      ].join("\n"),
    );
    p = startCli(["serve", "--config", file]);
    await p.waitFor(/admin listener \(metrics\)/);
    // Both workers listening (each logs it).
    await p.waitFor(/eProxy listening[\s\S]*eProxy listening/);
    const n = 12;
    for (let i = 0; i < n; i++) expect(await get(`https://127.0.0.1:${port}/healthz`, pki.ca)).toBe(200);

    const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain(
      `eproxy_request_duration_seconds_count{route="GET /healthz",protocol="rest",code="ok"} ${n}`,
    );
    // Each metric once: aggregated, not concatenated.
    const helps = text.split("\n").filter((l) => l.startsWith("# HELP eproxy_request_duration_seconds "));
    expect(helps).toHaveLength(1);
    if (promtool) {
      const lint = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8" });
      expect(`${lint.stdout}${lint.stderr}`.trim()).toBe("");
      expect(lint.status).toBe(0);
    }
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  });
});
