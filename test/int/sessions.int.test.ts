import { readFileSync } from "node:fs";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/eproxy/v1/auth_pb.ts";
import { type AuthEnv, cibaLogin, DOCTOR, NURSE, PHARMACIST, startAuthEnv } from "../support/auth-env.ts";
import { testPki } from "../support/server.ts";

let env: AuthEnv;
beforeAll(async () => {
  // PSC access tokens of 30 s with a 30 s refresh margin: every use needs a refresh.
  env = await startAuthEnv({
    psc: { accessTokenTtlSeconds: 30 },
    sessions: { refreshBeforeExpirySeconds: 30 },
  });
});
afterAll(async () => {
  await env?.close();
});

async function login(nationalId: string, clientId: "lps-demo" | "lps-other" = "lps-demo"): Promise<string> {
  return cibaLogin(env.auth(clientId), nationalId);
}

describe("sessions", () => {
  it("50 concurrent GetSession calls at token expiry make exactly one PSC refresh", async () => {
    const token = await login(DOCTOR);
    env.psc.reset();
    const auth = env.auth();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => auth.getSession({ sessionToken: token })),
    );
    expect(results.every((r) => r.session?.professional?.nationalId === DOCTOR)).toBe(true);
    expect(env.psc.stats.refreshes).toBe(1);
    await auth.logout({ sessionToken: token });
  });

  it("a refresh refused with invalid_grant ends the session with a re-authentication error", async () => {
    const token = await login(NURSE);
    env.psc.faults.refreshInvalidGrant = true;
    try {
      const e = (await env
        .auth()
        .getSession({ sessionToken: token })
        .catch((x: unknown) => x)) as ConnectError;
      expect(e).toBeInstanceOf(ConnectError);
      expect(e.code).toBe(Code.Unauthenticated);
      expect(e.metadata.get("x-eproxy-error")).toBe("REAUTHENTICATION_REQUIRED");
      expect(e.rawMessage).toMatch(/re-authentication required/);
    } finally {
      env.psc.faults.refreshInvalidGrant = false;
    }
    const after = (await env
      .auth()
      .getSession({ sessionToken: token })
      .catch((x: unknown) => x)) as ConnectError;
    expect(after.metadata.get("x-eproxy-error")).toBe("SESSION_INVALID");
  });

  it("belongs to one client: another client's API key cannot use it", async () => {
    const token = await login(PHARMACIST);
    const e = (await env
      .auth("lps-other")
      .getSession({ sessionToken: token })
      .catch((x: unknown) => x)) as ConnectError;
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.metadata.get("x-eproxy-error")).toBe("SESSION_INVALID");
    const rest = await env.http("GET", "/oauth2/session", {
      headers: { "x-eproxy-api-key": env.keys["lps-other"], "x-eproxy-session": token },
    });
    expect(rest.status).toBe(401);
    // The owner still can, with its client certificate instead of an API key.
    const pki = testPki();
    const byCert = createClient(
      AuthService,
      createGrpcTransport({
        baseUrl: env.url,
        nodeOptions: {
          ca: pki.ca,
          cert: readFileSync(pki.client("lps-demo").certFile),
          key: readFileSync(pki.client("lps-demo").keyFile),
        },
      }),
    );
    const ok = await byCert.getSession({}, { headers: { "x-eproxy-session": token } });
    expect(ok.session?.clientId).toBe("lps-demo");
    await env.auth().logout({ sessionToken: token });
  });

  it("logout ends the session at eProxy and reaches PSC's end-session and revocation endpoints", async () => {
    const token = await login(DOCTOR);
    env.psc.reset();
    const out = await env.auth().logout({ sessionToken: token });
    expect(out.pscLoggedOut).toBe(true);
    expect(env.psc.stats.endSessions).toBe(1);
    expect(env.psc.stats.revocations).toBe(1);
    const e = (await env
      .auth()
      .getSession({ sessionToken: token })
      .catch((x: unknown) => x)) as ConnectError;
    expect(e.metadata.get("x-eproxy-error")).toBe("SESSION_INVALID");
    // A new CIBA for the same professional now pushes again (nothing to reuse).
    const started = await env.auth().startCiba({ nationalId: DOCTOR });
    expect(started.reused).toBe(false);
  });

  it("returns raw PSC tokens only to clients configured for it", async () => {
    const exposed = await startAuthEnv({ clientOverrides: { exposePscTokens: true } });
    try {
      const auth = exposed.auth();
      const started = await auth.startCiba({ nationalId: NURSE });
      let last: any;
      for await (const m of auth.watchCiba({ authReqId: started.authReqId })) last = m;
      expect(last.session.pscTokens.accessToken).toBeTruthy();
      expect(last.session.pscTokens.idToken.split(".")).toHaveLength(3);
    } finally {
      await exposed.close();
    }
  });

  it("reports ready when the store and PSC answer", async () => {
    const res = await env.http("GET", "/readyz");
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ status: "ok", checks: { sessionStore: "ok", psc: "ok", traces: "ok" } });
  });

  it("requires the caller's credentials on every RPC", async () => {
    const anon = createClient(
      AuthService,
      createGrpcTransport({ baseUrl: env.url, nodeOptions: { ca: env.ca } }),
    );
    for (const call of [
      () => anon.startCiba({ nationalId: DOCTOR }),
      () => anon.pollCiba({ authReqId: "x" }),
      () => anon.getSession({ sessionToken: "eps_x" }),
      () => anon.logout({ sessionToken: "eps_x" }),
      () => anon.codeFlowCallback({ code: "x" }),
    ]) {
      const e = (await call().catch((x: unknown) => x)) as ConnectError;
      expect(e.code).toBe(Code.Unauthenticated);
    }
  });
});
