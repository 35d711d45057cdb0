/**
 * Tracing never costs a request: with the OTLP receiver unreachable, calls are served as usual and
 * eProxy says (once) that spans are being dropped.
 */
import { Writable } from "node:stream";
import { afterAll, expect, it } from "vitest";
import { freePort } from "../../src/infra/free-port.ts";
import { type AuthEnv, startAuthEnv } from "../support/auth-env.ts";

let env: AuthEnv | undefined;
afterAll(async () => {
  await env?.close();
});

it("serves while the OTLP receiver is down, and warns that spans are dropped", async () => {
  const lines: Array<Record<string, unknown>> = [];
  const logDestination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  env = await startAuthEnv({
    logDestination,
    extra: {
      tracing: {
        otlpEndpoint: `http://127.0.0.1:${await freePort()}/v1/traces`,
        batchDelayMs: 50,
        exportTimeoutMs: 2_000,
      },
    },
  });
  for (let i = 0; i < 3; i++) expect((await env.http("GET", "/healthz")).status).toBe(200);
  const deadline = Date.now() + 20_000;
  while (!lines.some((l) => l.msg === "tracing: spans could not be exported (dropped)")) {
    if (Date.now() > deadline)
      throw new Error(`no export warning in:\n${lines.map((l) => l.msg).join("\n")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const warnings = lines.filter((l) => l.msg === "tracing: spans could not be exported (dropped)");
  expect(warnings).toHaveLength(1);
  expect(warnings[0]?.level).toBe("warn");
});
