/**
 * HTTP/2: once a stream is closed, what the request left on it is let go (releaseStream in
 * src/server.ts). Node keeps closed streams until the next full collection, and everything their
 * listeners reach would be promoted with them. The server's streams are observed through Node's
 * `http2.server.stream.created` diagnostics channel: after the answer, each keeps only the "error"
 * listener eProxy leaves, and the connection goes on serving.
 */
import dc from "node:diagnostics_channel";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, DOCTOR, startAuthEnv } from "../support/auth-env.ts";

let env: AuthEnv;
let token: string;
const created: http2.ServerHttp2Stream[] = [];
const onCreated = (m: unknown) => created.push((m as { stream: http2.ServerHttp2Stream }).stream);

beforeAll(async () => {
  env = await startAuthEnv();
  token = await cibaLogin(env.auth("lps-demo"), DOCTOR);
  dc.subscribe("http2.server.stream.created", onCreated);
});
afterAll(async () => {
  dc.unsubscribe("http2.server.stream.created", onCreated);
  await env?.close();
});

/** One request on `session`; resolves with the status and body once the answer has ended. */
function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    let status = 0;
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      status = Number(h[":status"]);
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve({ status, body: Buffer.concat(chunks).toString() }));
    req.on("error", reject);
    req.end(body);
  });
}

/** Waits (at most 5 s, polling) until the stream keeps nothing but eProxy's "error" listener. */
async function released(stream: http2.ServerHttp2Stream): Promise<string[]> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (stream.closed && stream.eventNames().join() === "error" && stream.listenerCount("error") === 1) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return stream.eventNames().map(String);
}

describe("HTTP/2 streams after their answer", () => {
  it("keep no listener but one for errors: health, relay, ForwardSoap, and a caller's reset", async () => {
    const session = http2.connect(env.url, { ca: env.ca });
    const key = { "x-eproxy-api-key": env.keys["lps-demo"] };
    const first = created.length;

    expect((await request(session, { ":path": "/healthz" })).status).toBe(200);
    const relayed = await request(
      session,
      {
        ":method": "POST",
        ":path": "/send/insi/rechercherInsAvecTraitsIdentite",
        authorization: `Bearer ${token}`,
        "content-type": "application/soap+xml; charset=utf-8",
        ...key,
      },
      insiSearchRequest("RELEASE"),
    );
    expect(relayed.status).toBe(200);
    expect(relayed.body).toContain("CodeCR>00");
    // ForwardSoap as Connect JSON (the fast path).
    const forwarded = await request(
      session,
      {
        ":method": "POST",
        ":path": "/eproxy.v1.RelayService/ForwardSoap",
        "content-type": "application/json",
        ...key,
      },
      JSON.stringify({
        sessionToken: token,
        service: "insi",
        contentType: "application/soap+xml; charset=utf-8",
        body: Buffer.from(insiSearchRequest("RELEASE")).toString("base64"),
      }),
    );
    expect(forwarded.status).toBe(200);
    expect(JSON.parse(forwarded.body).statusCode).toBe(200);
    // A refusal (no credentials) goes through the same handler.
    expect((await request(session, { ":method": "POST", ":path": "/send/insi" }, "x")).status).toBe(401);

    // A caller that resets its stream in the middle of a relayed upload.
    const reset = session.request({
      ":method": "POST",
      ":path": "/send/insi/rechercherInsAvecTraitsIdentite",
      authorization: `Bearer ${token}`,
      "content-type": "application/soap+xml; charset=utf-8",
      ...key,
    });
    reset.on("error", () => {});
    reset.write("<soap:Envelope");
    await new Promise((r) => setTimeout(r, 100));
    reset.close(http2.constants.NGHTTP2_CANCEL);

    const streams = created.slice(first);
    expect(streams).toHaveLength(5);
    for (const s of streams) expect(await released(s)).toEqual(["error"]);

    // The connection still serves.
    expect((await request(session, { ":path": "/healthz" })).status).toBe(200);
    session.close();
  });
});
