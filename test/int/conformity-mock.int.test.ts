import { mkdtempSync, readFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { compactVerify, createLocalJWKSet } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSandbox, type Sandbox } from "../../src/sandbox/sandbox.ts";

/**
 * The agency's conformity mock in the sandbox (`signsessiondata`), reached the way the conformity
 * test reaches it: a CIBA login through eProxy, then the session data relayed through
 * `/send/signsessiondata/...` with the API token of the mock's own realm.
 */
const DOCTOR = "899700218896";
let sandbox: Sandbox;
let dir: string;
let apiKey: string;

function request(
  method: string,
  url: string,
  init: { headers?: Record<string, string>; body?: unknown; clientCert?: boolean } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const certs = path.join(dir, "certs");
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: readFileSync(path.join(certs, "ca.pem")),
        ...(init.clientCert
          ? {
              cert: readFileSync(path.join(certs, "clients", "lps-demo.pem")),
              key: readFileSync(path.join(certs, "clients", "lps-demo-key.pem")),
            }
          : {}),
        headers: {
          ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
          ...init.headers,
        },
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(init.body === undefined ? undefined : JSON.stringify(init.body));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "eproxy-conformity-mock-"));
  sandbox = await runSandbox({
    port: 0,
    pscPort: 0,
    teleservicesPort: 0,
    certsDir: path.join(dir, "certs"),
    out: new Writable({ write: (_c, _e, cb) => cb() }),
    logLevel: "silent",
    approveAfterMs: 100,
  });
  const keys = JSON.parse(readFileSync(path.join(dir, "certs", "sandbox-api-keys.json"), "utf8"));
  apiKey = keys["lps-demo"].key;
});
afterAll(async () => {
  await sandbox?.close();
});

async function login(): Promise<Record<string, string>> {
  const r = await request("POST", `${sandbox.url}/oauth2/ciba`, {
    headers: { "x-eproxy-api-key": apiKey },
    body: { clientId: "lps-demo", nationalId: DOCTOR, channel: "MOBILE", newSession: true },
  });
  expect(r.status, r.body).toBe(200);
  return JSON.parse(r.body).session;
}

describe("the signsessiondata conformity mock, relayed by eProxy", () => {
  it("gives the user software proxy_session_id and session_state, and signs them back verifiably", async () => {
    const session = await login();
    // Both values the conformity test needs come with the session (no exposePscTokens needed).
    expect(session.proxySessionId).toMatch(/^[\w-]{22}$/);
    expect(session.sessionState).toMatch(/^[\w-]{8,}$/);
    expect(session.pscTokens).toBeUndefined();
    const data = {
      nationalId: DOCTOR,
      clientID: "lps-demo",
      proxy_session_id: session.proxySessionId,
      session_state: session.sessionState,
    };
    const started = new Date(Date.now() - 1000).toISOString();
    const r = await request("POST", `${sandbox.url}/send/signsessiondata/apipsc/signsessiondata`, {
      headers: { "x-eproxy-api-key": apiKey, authorization: `Bearer ${session.sessionToken}` },
      body: data,
    });
    expect(r.status, r.body).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/json/);
    const answer = JSON.parse(r.body);
    expect(answer).toMatchObject(data);
    const jwks = await request("GET", sandbox.teleservices.mockJwksUrl, { clientCert: true });
    const verified = await compactVerify(answer.signature, createLocalJWKSet(JSON.parse(jwks.body)));
    expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual(data);

    // The SEND trace carries what the conformity test reads: session_state, the session, the path.
    let send: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !send; i++) {
      const t = await request(
        "GET",
        `${sandbox.url}/traces?start=${started}&end=${new Date(Date.now() + 1000).toISOString()}&type=SEND`,
        { headers: { "x-eproxy-api-key": apiKey } },
      );
      send = (JSON.parse(t.body) as Array<Record<string, unknown>>).find(
        (e) => e.sessionHash === session.proxySessionId,
      );
      if (!send) await new Promise((res) => setTimeout(res, 100));
    }
    expect(send).toMatchObject({
      service: "signsessiondata",
      path: "/apipsc/signsessiondata",
      sessionState: session.sessionState,
      clientId: "lps-demo",
      certificateDn: expect.stringContaining("CN=lps-demo"),
      upstreamStatus: 200,
      outcome: "OK",
    });
  });

  it("refuses session data that is not the API token's subject (the mock's answer passes through)", async () => {
    const session = await login();
    const r = await request("POST", `${sandbox.url}/send/signsessiondata/apipsc/signsessiondata`, {
      headers: { "x-eproxy-api-key": apiKey, authorization: `Bearer ${session.sessionToken}` },
      body: {
        nationalId: "899700366240",
        clientID: "lps-demo",
        proxy_session_id: session.proxySessionId,
        session_state: session.sessionState,
      },
    });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ error: "access_denied" });
  });
});
