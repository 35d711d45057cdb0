/**
 * The access line tells a caller's HTTP/2 hang-up from a completed answer: Node's compatibility
 * layer reports `writableFinished` for a stream the caller reset, so eProxy reads the stream's
 * RST code too. Real HTTP/2 client, real TLS, a teleservice that is slow to answer.
 */
import http2 from "node:http2";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTIONS, insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, DOCTOR, startAuthEnv } from "../support/auth-env.ts";

const SOAP12 = `application/soap+xml; charset=utf-8; action="${ACTIONS.insiSearch}"`;

describe("access line on HTTP/2", () => {
  let env: AuthEnv;
  let token: string;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    let pending = "";
    const logDestination = new Writable({
      write(chunk: Buffer, _enc, done) {
        pending += chunk.toString();
        for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          try {
            lines.push(JSON.parse(line));
          } catch {
            // not a JSON line
          }
        }
        done();
      },
    });
    env = await startAuthEnv({ logDestination, extra: { admin: { listenAddress: "127.0.0.1", port: 0 } } });
    token = await cibaLogin(env.authKey(env.keys["lps-demo"]), DOCTOR);
  });
  afterAll(async () => {
    await env?.close();
  });

  function send(requestId: string, cancelAfterMs?: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const s = http2.connect(env.url, { ca: env.ca });
      s.on("error", reject);
      const st = s.request({
        ":method": "POST",
        ":path": "/send/insi",
        "x-eproxy-api-key": env.keys["lps-demo"],
        authorization: `Bearer ${token}`,
        "content-type": SOAP12,
        "x-request-id": requestId,
      });
      let status = 0;
      st.on("response", (h) => {
        status = Number(h[":status"]);
      });
      st.on("error", () => undefined);
      st.resume();
      st.on("close", () => {
        s.close();
        resolve(status);
      });
      st.end(insiSearchRequest("UNIQUE"));
      if (cancelAfterMs !== undefined)
        setTimeout(() => st.close(http2.constants.NGHTTP2_CANCEL), cancelAfterMs);
    });
  }

  async function accessLine(requestId: string): Promise<Record<string, unknown>> {
    for (let i = 0; i < 200; i++) {
      const line = lines.find((l) => l.msg === "request" && l.requestId === requestId);
      if (line) return line;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no access line for ${requestId}`);
  }

  it("logs a completed relay as completed with its code", async () => {
    expect(await send("access-ok-1")).toBe(200);
    const line = await accessLine("access-ok-1");
    expect(line).toMatchObject({
      completed: true,
      status: 200,
      clientId: "lps-demo",
      route: "/send/:service/*",
    });
  });

  it("logs a caller's RST_STREAM as not completed (CLIENT_CLOSED), at info, without a stack", async () => {
    env.tele.faults.slowHeadersMs = 3_000;
    try {
      await send("access-reset-1", 300);
      const line = await accessLine("access-reset-1");
      expect(line.completed).toBe(false);
      expect(line.code).toBe("CLIENT_CLOSED");
      expect(line.level).toBe("info");
      expect(JSON.stringify(line)).not.toMatch(/stack/i);
    } finally {
      env.tele.faults.slowHeadersMs = 0;
    }
  });

  /** `eproxy_request_duration_seconds_count` of the relay route, by code. */
  async function relayCounts(): Promise<Record<string, number>> {
    const scrape = await (await fetch(env.server.metricsUrl as string)).text();
    const out: Record<string, number> = {};
    for (const m of scrape.matchAll(/^eproxy_request_duration_seconds_count\{([^}]*)\} (\d+)/gm)) {
      const labels = m[1] as string;
      if (!labels.includes('route="POST /send/:service/*"')) continue;
      const code = /code="([^"]*)"/.exec(labels)?.[1] as string;
      out[code] = (out[code] ?? 0) + Number(m[2]);
    }
    return out;
  }

  it("counts a caller's RST_STREAM in the request metric as the access line logs it (not ok)", async () => {
    env.tele.faults.slowHeadersMs = 3_000;
    try {
      const before = await relayCounts();
      await send("access-reset-2", 300);
      const line = await accessLine("access-reset-2");
      expect(line.completed).toBe(false);
      await expect
        .poll(async () => sum(await relayCounts()), { timeout: 20_000, interval: 50 })
        .not.toBe(sum(before));
      const after = await relayCounts();
      const moved = Object.keys(after).filter((c) => (after[c] ?? 0) !== (before[c] ?? 0));
      expect(moved).toEqual([String(line.code).toLowerCase()]);
    } finally {
      env.tele.faults.slowHeadersMs = 0;
    }
  });
});

function sum(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}
