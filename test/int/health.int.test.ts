import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.ts";
import { type AuthEnv, startAuthEnv } from "../support/auth-env.ts";

const run = promisify(execFile);
const PROBE = [path.join(homedir(), "go/bin/grpc-health-probe"), "/usr/local/bin/grpc-health-probe"].find(
  (p) => existsSync(p),
);

let env: AuthEnv;
let ca: string;
beforeAll(async () => {
  env = await startAuthEnv();
  ca = path.join(mkdtempSync(path.join(tmpdir(), "eproxy-health-")), "ca.pem");
  writeFileSync(ca, env.ca);
});
afterAll(async () => {
  await env?.close();
});

describe("health", () => {
  it("/readyz names each dependency, PSC included", async () => {
    const res = await env.http("GET", "/readyz");
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ status: "ok", checks: { sessionStore: "ok", psc: "ok", traces: "ok" } });
  });

  it.skipIf(!PROBE)(
    "grpc-health-probe sees SERVING, per service too; an unknown service is refused",
    async () => {
      const port = new URL(env.url).port;
      const probe = (...extra: string[]) =>
        run(PROBE as string, [
          "-addr",
          `localhost:${port}`,
          "-tls",
          "-tls-ca-cert",
          ca,
          // The defaults (1 s) are too tight for a busy CI machine.
          "-connect-timeout",
          "10s",
          "-rpc-timeout",
          "10s",
          ...extra,
        ]).then((r) => `${r.stdout}${r.stderr}`);
      expect(await probe()).toContain("status: SERVING");
      expect(await probe("-service", "eproxy.v1.RelayService")).toContain("status: SERVING");
      await expect(probe("-service", "nope.Service")).rejects.toMatchObject({ code: expect.any(Number) });
    },
  );

  it("SIGTERM sequence: readiness off first while requests are served, Watch ends unavailable, then close", async () => {
    const own = await startAuthEnv({ server: { drainDelayMs: 1_500 } });
    try {
      const health = createClient(
        Health,
        createGrpcTransport({ baseUrl: own.url, nodeOptions: { ca: own.ca } }),
      );
      const seen: Status[] = [];
      const watching = (async () => {
        try {
          for await (const m of health.watch({ service: "" })) seen.push(m.status);
          return undefined;
        } catch (e) {
          return ConnectError.from(e);
        }
      })();
      await expect.poll(() => seen.length, { timeout: 20_000 }).toBeGreaterThan(0);
      expect(seen).toEqual([Status.SERVING]);
      const closing = own.server.close();
      // Readiness flipped at once; the process still answers during drainDelayMs.
      const ready = await own.http("GET", "/readyz");
      expect(ready.status).toBe(503);
      expect(ready.json().status).toBe("draining");
      expect((await own.http("GET", "/healthz")).status).toBe(200);
      const err = await watching;
      expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
      expect(err?.code).toBe(Code.Unavailable);
      await closing;
      await expect(own.http("GET", "/healthz")).rejects.toThrow();
    } finally {
      await own.close();
    }
  });
});
