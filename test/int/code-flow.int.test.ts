import https from "node:https";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type AuthEnv,
  BACKEND_REDIRECT,
  cibaLogin,
  DOCTOR,
  NURSE,
  startAuthEnv,
} from "../support/auth-env.ts";
import { expectDocumentedAnswer } from "../support/openapi.ts";

let env: AuthEnv;
beforeAll(async () => {
  env = await startAuthEnv();
});
afterAll(async () => {
  await env?.close();
});
beforeEach(() => {
  env.psc.reset();
});

/** A GET without following redirects, with a cookie jar, as `curl -c jar -b jar` would do. */
function get(
  url: string,
  jar: Map<string, string>,
): Promise<{ status: number; location?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const req = https.request(url, { ca: env.ca, agent: false, headers: cookie ? { cookie } : {} }, (res) => {
      for (const c of res.headers["set-cookie"] ?? []) {
        const [pair] = c.split(";");
        const i = (pair as string).indexOf("=");
        jar.set((pair as string).slice(0, i), (pair as string).slice(i + 1));
      }
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d;
      });
      res.on("end", () => {
        // The browser walks through PSC too: only eProxy's answers are checked against its document.
        if (url.startsWith(env.url)) {
          try {
            expectDocumentedAnswer("GET", url, { status: res.statusCode ?? 0, headers: res.headers, body });
          } catch (err) {
            reject(err);
            return;
          }
        }
        resolve({
          status: res.statusCode ?? 0,
          ...(res.headers.location ? { location: res.headers.location } : {}),
          body,
        });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Follows redirects (resolving relative ones) until one leaves PSC; returns that URL. */
async function throughPsc(start: string, jar: Map<string, string>): Promise<URL> {
  let url = new URL(start);
  for (let i = 0; i < 10; i++) {
    if (!url.href.startsWith(env.psc.issuer)) return url;
    const res = await get(url.href, jar);
    expect([302, 303]).toContain(res.status);
    url = new URL(res.location as string, url);
  }
  throw new Error("too many redirects");
}

async function startFlow(redirectUri = BACKEND_REDIRECT) {
  return env.http("GET", `/oauth2/codeflow/lps-demo?redirectUri=${encodeURIComponent(redirectUri)}`);
}

describe("authorization code flow (curl-style, no browser)", () => {
  it("start → PSC → eProxy callback → backend redirect with a one-time code → session, once", async () => {
    const jar = new Map<string, string>();
    const start = await startFlow();
    expect(start.status).toBe(302);
    const authorize = new URL(start.headers.location as string);
    expect(authorize.href.startsWith(`${env.psc.issuer}/protocol/openid-connect/auth`)).toBe(true);
    expect(authorize.searchParams.get("code_challenge_method")).toBe("S256");
    expect(authorize.searchParams.get("acr_values")).toBe("eidas1");
    expect(authorize.searchParams.get("scope")).toBe("openid scope_all");
    expect(authorize.searchParams.get("state")).toBeTruthy();
    expect(authorize.searchParams.get("nonce")).toBeTruthy();

    const callback = await throughPsc(authorize.href, jar);
    expect(callback.pathname).toBe("/oauth2/codeflow/lps-demo/callback");
    const back = await env.http("GET", callback.pathname + callback.search);
    expect(back.status).toBe(302);
    const target = new URL(back.headers.location as string);
    expect(`${target.origin}${target.pathname}`).toBe(BACKEND_REDIRECT);
    const code = target.searchParams.get("code") as string;
    expect(code).toMatch(/^[\w-]{43}$/);

    const redeem = () =>
      env.http("POST", "/oauth2/codeflow/token", {
        headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
        body: { clientId: "lps-demo", code },
      });
    const first = await redeem();
    expect(first.status).toBe(200);
    const session = first.json();
    expect(session.sessionToken).toMatch(/^eps_/);
    expect(session.professional.nationalId).toBe("899700218896");
    expect(session.acr).toBe("eidas1");

    // Replaying the one-time code fails, clearly.
    const replay = await redeem();
    expect(replay.status).toBe(400);
    expect(replay.json()).toMatchObject({
      code: "INVALID_ARGUMENT",
      detail: "unknown, expired or already used code",
    });
    // Replaying PSC's callback (same state) fails too.
    const again = await env.http("GET", callback.pathname + callback.search);
    expect(again.status).toBe(400);
    expect(again.headers["content-type"]).toBe("application/problem+json");
    await env.auth().logout({ sessionToken: session.sessionToken });
  });

  it("gives the code to the client that started the flow only (Connect CodeFlowCallback)", async () => {
    const jar = new Map<string, string>();
    env.psc.settings.codeFlowNationalId = NURSE;
    try {
      const started = await env.auth().startCodeFlow({ clientId: "lps-demo", redirectUri: BACKEND_REDIRECT });
      const callback = await throughPsc(started.authorizationUrl, jar);
      const back = await env.http("GET", callback.pathname + callback.search);
      const code = new URL(back.headers.location as string).searchParams.get("code") as string;
      const stolen = await env
        .auth("lps-other")
        .codeFlowCallback({ code })
        .catch((e: unknown) => e);
      expect((stolen as Error).message).toMatch(/already used code/);
      // The code was consumed by the failed attempt: single use means single use.
      const late = await env
        .auth()
        .codeFlowCallback({ clientId: "lps-demo", code })
        .catch((e: unknown) => e);
      expect((late as Error).message).toMatch(/already used code/);
    } finally {
      env.psc.settings.codeFlowNationalId = "899700218896";
    }
  });

  it("refuses a tampered state without redirecting anywhere", async () => {
    const jar = new Map<string, string>();
    const start = await startFlow();
    const callback = await throughPsc(start.headers.location as string, jar);
    callback.searchParams.set("state", `${callback.searchParams.get("state")}x`);
    const res = await env.http("GET", callback.pathname + callback.search);
    expect(res.status).toBe(400);
    expect(res.headers.location).toBeUndefined();
    expect(res.json()).toMatchObject({
      code: "INVALID_ARGUMENT",
      detail: "unknown, expired or already used state",
    });
  });

  it("refuses an unregistered redirect URI (no open redirect)", async () => {
    for (const uri of [
      "https://evil.example/steal",
      `${BACKEND_REDIRECT}/../x`,
      `${BACKEND_REDIRECT}?a=1`,
      "",
    ]) {
      const res = await startFlow(uri);
      expect(res.status).toBe(400);
      expect(res.headers.location).toBeUndefined();
      expect(res.json().detail).toBe("redirectUri is not registered for this client");
    }
    const unknownClient = await env.http(
      "GET",
      `/oauth2/codeflow/nobody?redirectUri=${encodeURIComponent(BACKEND_REDIRECT)}`,
    );
    expect(unknownClient.status).toBe(404);
  });

  it("never ends a live session: an abandoned browser login touches nothing, a completed one adds a session", async () => {
    const live = await cibaLogin(env.auth(), DOCTOR);
    const jar = new Map<string, string>();
    // Abandoned after PSC's redirect: the one-time code is never redeemed.
    const abandoned = await throughPsc((await startFlow()).headers.location as string, jar);
    expect((await env.http("GET", abandoned.pathname + abandoned.search)).status).toBe(302);
    expect((await env.auth().getSession({ sessionToken: live })).session?.professional?.nationalId).toBe(
      DOCTOR,
    );
    // Completed: a second session for the same professional and client; the first one still works.
    const done = await throughPsc((await startFlow()).headers.location as string, jar);
    const back = await env.http("GET", done.pathname + done.search);
    const code = new URL(back.headers.location as string).searchParams.get("code") as string;
    const second = await env.auth().codeFlowCallback({ clientId: "lps-demo", code });
    expect(second.session?.sessionToken).toMatch(/^eps_/);
    expect(second.session?.sessionToken).not.toBe(live);
    await env.auth().getSession({ sessionToken: live });
    await env.auth().getSession({ sessionToken: second.session?.sessionToken ?? "" });
    await env.auth().logout({ sessionToken: live });
    await env.auth().logout({ sessionToken: second.session?.sessionToken ?? "" });
  });

  it("sends PSC errors to the backend's redirect URI as error parameters", async () => {
    env.psc.faults.codeFlowError = "access_denied";
    const jar = new Map<string, string>();
    const start = await startFlow();
    const callback = await throughPsc(start.headers.location as string, jar);
    expect(callback.searchParams.get("error")).toBe("access_denied");
    const res = await env.http("GET", callback.pathname + callback.search);
    expect(res.status).toBe(302);
    const target = new URL(res.headers.location as string);
    expect(`${target.origin}${target.pathname}`).toBe(BACKEND_REDIRECT);
    expect(target.searchParams.get("error")).toBe("access_denied");
    expect(target.searchParams.get("code")).toBeNull();
  });
});
