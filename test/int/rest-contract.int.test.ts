/**
 * What the OpenAPI document promises and Schemathesis checks, at runtime: enums and required
 * parameters are enforced (a 400 problem document, not a silent default), and `/send` with no body
 * is refused with a SOAP fault instead of being relayed. Every answer also goes through
 * `expectDocumentedAnswer` (test/support/openapi.ts: explicit statuses, no catch-all).
 */
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AuthEnv, cibaLogin, DOCTOR, startAuthEnv } from "../support/auth-env.ts";
import { expectDocumentedAnswer } from "../support/openapi.ts";

let env: AuthEnv;
let token: string;
const key = () => ({ "x-eproxy-api-key": env.keys["lps-demo"] });

beforeAll(async () => {
  env = await startAuthEnv({ psc: { autoApproveMs: 50 } });
  token = await cibaLogin(env.auth(), DOCTOR);
});
afterAll(async () => {
  await env?.close();
});

/** One HTTP/2 request to eProxy with no DATA frame at all (END_STREAM on the headers). */
async function h2(path: string, headers: Record<string, string>, body?: string) {
  const session = http2.connect(env.url, { ca: env.ca });
  try {
    const stream = session.request(
      { ":method": "POST", ":path": path, ...headers },
      { endStream: body === undefined },
    );
    if (body !== undefined) stream.end(body);
    const head = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      stream.once("response", resolve);
      stream.once("error", reject);
    });
    let text = "";
    for await (const c of stream) text += c;
    const answer = { status: Number(head[":status"]), headers: head as Record<string, unknown>, body: text };
    expectDocumentedAnswer("POST", path, answer);
    return answer;
  } finally {
    session.close();
  }
}

describe("REST contract enforcement", () => {
  it("refuses an unknown CIBA mode with a 400 problem document (it used to block as if absent)", async () => {
    const r = await env.http("POST", "/oauth2/ciba?mode=AAA", {
      headers: key(),
      body: { nationalId: DOCTOR },
    });
    expect(r.status).toBe(400);
    expect(r.headers["content-type"]).toBe("application/problem+json");
    expect(r.json()).toMatchObject({ code: "INVALID_ARGUMENT", detail: expect.stringMatching(/mode/) });
  });

  it("refuses /send with no body (HTTP/1.1 without length, Content-Length: 0, HTTP/2 END_STREAM)", async () => {
    const headers = { ...key(), authorization: `Bearer ${token}`, "content-type": "application/soap+xml" };
    const before = env.tele.stats.requests;
    const answers = [
      await env.http("POST", "/send/insi/rechercherInsAvecTraitsIdentite", { headers }),
      await env.http("POST", "/send/insi", { headers: { ...headers, "content-length": "0" }, body: "" }),
      await h2("/send/insi", headers),
      // A body that turns out empty (HTTP/2 DATA frame of length 0): the relay refuses it too.
      await h2("/send/insi", headers, ""),
    ];
    for (const r of answers) {
      expect(r.status).toBe(400);
      expect(r.headers["x-eproxy-error"]).toBe("INVALID_ARGUMENT");
      expect(r.headers["content-type"]).toBe("application/soap+xml; charset=utf-8");
      expect(r.body).toContain("ep:InvalidRequest");
    }
    expect(env.tele.stats.requests).toBe(before);
  });

  it("enforces the trace query's enum, integer and date-time parameters", async () => {
    const range = "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z";
    for (const q of [
      `${range}&type=BOGUS`,
      `${range}&type=`,
      `${range}&pageSize=abc`,
      `${range}&pageSize=0`,
      `${range}&pageSize=1001`,
      "start=0&end=1",
    ]) {
      const r = await env.http("GET", `/traces?${q}`, { headers: key() });
      expect(r.status, q).toBe(400);
      expect(r.json().code, q).toBe("INVALID_ARGUMENT");
    }
    const ok = await env.http("GET", `/traces?${range}&type=SEND&pageSize=1000`, { headers: key() });
    expect(ok.status).toBe(200);
  });

  it("refuses unknown JSON members and off-enum values; null stands for an absent member", async () => {
    const typo = await env.http("POST", "/oauth2/ciba?mode=async", {
      headers: key(),
      body: { nationalId: DOCTOR, newsession: true },
    });
    expect(typo.status).toBe(400);
    expect(typo.json().detail).toMatch(/unknown member "newsession"/);
    const token = await env.http("POST", "/oauth2/codeflow/token", {
      headers: key(),
      body: { code: "x", extra: 1 },
    });
    expect(token.status).toBe(400);
    expect(token.json().detail).toMatch(/unknown member "extra"/);
    const channel = await env.http("POST", "/oauth2/ciba?mode=async", {
      headers: key(),
      body: { nationalId: DOCTOR, channel: "" },
    });
    expect(channel.status).toBe(400);
    // The doctor has a live session (beforeAll): reused, whatever the null members.
    const nulls = await env.http("POST", "/oauth2/ciba?mode=async", {
      headers: key(),
      body: { nationalId: DOCTOR, newSession: null, scope: null, channel: null, bindingMessage: "" },
    });
    expect(nulls.status).toBe(200);
    expect(nulls.json().reused).toBe(true);
  });

  it("routes a literal segment before a parameter: /oauth2/codeflow/token is POST only", async () => {
    for (const method of ["GET", "OPTIONS"]) {
      const r = await env.http(method, "/oauth2/codeflow/token", { headers: key() });
      expect(r.status, method).toBe(405);
      expect(r.headers.allow, method).toBe("POST");
    }
  });

  it("requires the code-flow callback's state", async () => {
    const r = await env.http("GET", "/oauth2/codeflow/lps-demo/callback?code=x");
    expect(r.status).toBe(400);
    expect(r.json().detail).toMatch(/state/);
  });
});
