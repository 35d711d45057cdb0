/**
 * `eproxy serve` with `server.workers: 2` (sessions in Redis) and the admin listener: the primary
 * serves one /metrics that sums both workers' registries, and Prometheus's linter accepts it.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { type CliProcess, freePort } from "../support/cli.ts";
import { getFresh, startServeWithWorkers } from "../support/serve-workers.ts";

const redisUrl = inject("redisUrl");
const promtool = [path.join(homedir(), "go/bin/promtool")].find((p) => existsSync(p));
let p: CliProcess | undefined;

afterAll(async () => {
  if (p && p.child.exitCode === null) {
    p.child.kill("SIGTERM");
    await p.exited;
  }
});

describe.skipIf(!redisUrl)("metrics with server.workers", () => {
  it("one scrape on the primary sums the workers, promtool-clean", async () => {
    const adminPort = await freePort();
    const { base, pki } = await startServeWithWorkers({
      redisUrl: redisUrl as string,
      name: "workers",
      extra: [`admin: {listenAddress: 127.0.0.1, port: ${adminPort}}`],
      started: (started) => {
        p = started;
      },
    });
    await p?.waitFor(/admin listener \(metrics\)/);
    const n = 12;
    for (let i = 0; i < n; i++) expect((await getFresh(`${base}/healthz`, pki.ca)).status).toBe(200);

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
    p?.child.kill("SIGTERM");
    expect(await p?.exited).toBe(0);
  });
});
