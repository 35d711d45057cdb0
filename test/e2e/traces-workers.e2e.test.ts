/**
 * `eproxy serve` with `server.workers: 2`, sessions in Redis and no MongoDB: the workers hand their
 * traces to the primary, so a client's trace query answers every trace it caused, whichever worker
 * served the call and whichever worker serves the query.
 */
import { afterAll, describe, expect, inject, it } from "vitest";
import { createApiKey } from "../../src/auth/api-keys.ts";
import type { CliProcess } from "../support/cli.ts";
import { getFresh, startServeWithWorkers } from "../support/serve-workers.ts";
import { testPki } from "../support/server.ts";

const redisUrl = inject("redisUrl");
let p: CliProcess | undefined;

afterAll(async () => {
  if (p && p.child.exitCode === null) {
    p.child.kill("SIGTERM");
    await p.exited;
  }
});

describe.skipIf(!redisUrl)("traces with server.workers and no MongoDB", () => {
  it("every query, on either worker, sees every trace of the client", async () => {
    const api = createApiKey();
    const client = testPki().client("lps-demo");
    const { base, pki } = await startServeWithWorkers({
      redisUrl: redisUrl as string,
      name: "traces-workers",
      extra: [
        "clients:",
        `  - {id: lps-demo, certFile: ${client.certFile}, keyFile: ${client.keyFile}, apiKeyHashes: ["${api.hash}"]}`,
      ],
      started: (started) => {
        p = started;
      },
    });
    const get = (url: string) => getFresh(url, pki.ca, { "x-eproxy-api-key": api.key });
    const from = new Date(Date.now() - 60_000).toISOString();
    // Each refused query (no range) records one REJECTED trace of lps-demo, on the worker serving it.
    const n = 20;
    for (let i = 0; i < n; i++) {
      expect((await get(`${base}/traces?pageSize=${i + 1}`)).status).toBe(400);
    }
    const to = new Date(Date.now() + 60_000).toISOString();
    const writers = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const res = await get(`${base}/traces?start=${from}&end=${to}&pageSize=1000`);
      expect(res.status).toBe(200);
      const traces = JSON.parse(res.body) as Array<{ type: string; clientId: string; writerId: string }>;
      const mine = traces.filter((t) => t.type === "REJECTED" && t.clientId === "lps-demo");
      expect(mine).toHaveLength(n);
      for (const t of mine) writers.add(t.writerId);
    }
    // Both workers recorded some (each writes its own chain), else the test proves nothing.
    expect(writers.size).toBe(2);
    const ready = await get(`${base}/readyz`);
    // Sessions shared, traces in one host: said in readiness.
    expect(JSON.parse(ready.body)).toMatchObject({ status: "degraded", checks: { traceRecord: "degraded" } });
    p?.child.kill("SIGTERM");
    expect(await p?.exited).toBe(0);
  }, 60_000);
});
