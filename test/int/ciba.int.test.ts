import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Channel, CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { type AuthEnv, DOCTOR, NURSE, PHARMACIST, startAuthEnv } from "../support/auth-env.ts";
import { pushFor } from "../support/psc-wait.ts";

let env: AuthEnv;
beforeAll(async () => {
  env = await startAuthEnv();
});
afterAll(async () => {
  await env?.close();
});
beforeEach(() => {
  env.psc.reset();
  env.psc.settings.autoApproveMs = 200;
});

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ConnectError);
  return e as ConnectError;
}

/** The simulator's id of the pending request for a professional. */
function pscIdFor(nationalId: string): string {
  const found = env.psc.pending().filter((p) => p.nationalId === nationalId);
  expect(found).toHaveLength(1);
  return found[0]?.authReqId as string;
}

async function watchUntilFinal(authReqId: string, clientId: "lps-demo" | "lps-other" = "lps-demo") {
  const states = [];
  for await (const m of env.auth(clientId).watchCiba({ authReqId })) states.push(m);
  return states;
}

describe("CIBA", () => {
  it("start → approval → session over gRPC, with the PSC identity", async () => {
    // Approved by the test, not by the simulator's timer: the push must still be pending when it is
    // looked at, however slow the machine.
    env.psc.settings.autoApproveMs = null;
    const auth = env.auth();
    const started = await auth.startCiba({
      clientId: "lps-demo",
      nationalId: NURSE,
      channel: Channel.MOBILE,
      bindingMessage: "42",
    });
    expect(started.authReqId).toMatch(/^[\w-]{20,}$/);
    expect(started.bindingMessage).toBe("42");
    expect(started.intervalSeconds).toBe(1);
    expect(started.expiresInSeconds).toBeGreaterThan(100);
    expect(env.psc.pending()).toEqual([
      expect.objectContaining({ nationalId: NURSE, bindingMessage: "42", channel: "MOBILE" }),
    ]);
    const first = await auth.pollCiba({ authReqId: started.authReqId });
    expect(first.status).toBe(CibaStatus.PENDING);
    await env.psc.approve(pscIdFor(NURSE));
    const states = await watchUntilFinal(started.authReqId);
    const last = states.at(-1);
    expect(last?.status).toBe(CibaStatus.APPROVED);
    const s = last?.session;
    expect(s?.sessionToken).toMatch(/^eps_[\w-]+\.[0-9a-z]+\.[\w-]{43}\.[\w-]{22}$/);
    expect(s?.professional?.nationalId).toBe(NURSE);
    expect(s?.professional?.familyName).toBe("SANDBOX-INFIRMIER");
    expect(s?.professional?.exercises[0]?.professionCode).toBe("60");
    expect(s?.professional?.exercises[0]?.activities[0]?.structureId).toBe("000000000003");
    expect(s?.acr).toBe("eidas1");
    expect(s?.pscTokens).toBeUndefined();
    // The token is handed out once: a later poll shows the session without it.
    const again = await auth.pollCiba({ authReqId: started.authReqId });
    expect(again.status).toBe(CibaStatus.APPROVED);
    expect(again.session?.sessionToken).toBe("");
    const got = await auth.getSession({ sessionToken: s?.sessionToken ?? "" });
    expect(got.session?.professional?.nationalId).toBe(NURSE);
    expect(got.session?.sessionToken).toBe("");
    await auth.logout({ sessionToken: s?.sessionToken ?? "" });
  });

  it("works over Connect JSON, and generates a binding message when absent", async () => {
    env.psc.settings.autoApproveMs = null;
    const auth = env.auth("lps-demo", "connect");
    const started = await auth.startCiba({
      clientId: "lps-demo",
      nationalId: PHARMACIST,
      channel: Channel.CARD,
    });
    expect(started.bindingMessage).toMatch(/^\d{2}$/);
    expect(env.psc.pending()[0]?.channel).toBe("CARD");
    await env.psc.approve(pscIdFor(PHARMACIST));
    const states = await watchUntilFinal(started.authReqId);
    const token = states.at(-1)?.session?.sessionToken ?? "";
    expect(token).toMatch(/^eps_/);
    await auth.logout({ sessionToken: token });
  });

  it("REST: blocking POST /oauth2/ciba answers the session at approval", async () => {
    env.psc.settings.autoApproveMs = 1_500;
    const t0 = Date.now();
    const res = await env.http("POST", "/oauth2/ciba", {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
      body: { clientId: "lps-demo", nationalId: DOCTOR, bindingMessage: "07", channel: "MOBILE" },
    });
    expect(res.status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_500);
    const body = res.json();
    expect(body.status).toBe("APPROVED");
    expect(body.reused).toBe(false);
    expect(body.session.sessionToken).toMatch(/^eps_/);
    expect(body.session.professional.nationalId).toBe(DOCTOR);
    // REST session routes accept the session as a Bearer and the API key in its own header.
    const s = await env.http("GET", "/oauth2/session", {
      headers: {
        "x-eproxy-api-key": env.keys["lps-demo"],
        authorization: `Bearer ${body.session.sessionToken}`,
      },
    });
    expect(s.status).toBe(200);
    expect(s.json().professional.givenName).toBe("Camille");
    const out = await env.http("DELETE", "/oauth2/session", {
      headers: {
        "x-eproxy-api-key": env.keys["lps-demo"],
        authorization: `Bearer ${body.session.sessionToken}`,
      },
    });
    expect(out.status).toBe(200);
  });

  it("REST: a live session is reused unless newSession is true; newSession must be a boolean", async () => {
    env.psc.settings.autoApproveMs = 200;
    const headers = { "x-eproxy-api-key": env.keys["lps-demo"] };
    const login = (extra: Record<string, unknown> = {}) =>
      env.http("POST", "/oauth2/ciba", {
        headers,
        body: { clientId: "lps-demo", nationalId: NURSE, bindingMessage: "40", channel: "MOBILE", ...extra },
      });
    const pushes = env.psc.stats.cibaRequests;
    const first = (await login({ newSession: true })).json();
    expect(first.reused).toBe(false);
    const reused = await login();
    expect(reused.status).toBe(200);
    expect(reused.json().reused).toBe(true);
    expect(reused.json().detail).toMatch(/newSession/);
    expect(reused.json().session.sessionToken ?? "").toBe("");
    const fresh = await login({ newSession: true });
    expect(fresh.status).toBe(200);
    expect(fresh.json().reused).toBe(false);
    expect(fresh.json().session.sessionToken).toMatch(/^eps_/);
    expect(fresh.json().session.sessionToken).not.toBe(first.session.sessionToken);
    expect(env.psc.stats.cibaRequests).toBe(pushes + 2);
    const bad = await login({ newSession: "yes" });
    expect(bad.status).toBe(400);
    expect(bad.json().code).toBe("INVALID_ARGUMENT");
    for (const t of [first.session.sessionToken, fresh.json().session.sessionToken]) {
      await env.http("DELETE", "/oauth2/session", { headers: { ...headers, authorization: `Bearer ${t}` } });
    }
  });

  it("REST: async mode answers 202 and the request is polled with GET", async () => {
    env.psc.settings.autoApproveMs = null;
    const res = await env.http("POST", "/oauth2/ciba", {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"], prefer: "respond-async" },
      body: { clientId: "lps-demo", nationalId: DOCTOR, bindingMessage: "11", channel: "CARD" },
    });
    expect(res.status).toBe(202);
    expect(res.headers["preference-applied"]).toBe("respond-async");
    const { authReqId, status } = res.json();
    expect(status).toBe("PENDING");
    expect(res.headers.location).toBe(`/oauth2/ciba/${authReqId}`);
    const pending = await env.http("GET", `/oauth2/ciba/${authReqId}`, {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
    });
    expect(pending.json().status).toBe("PENDING");
    await env.psc.approve(pscIdFor(DOCTOR));
    let body: any;
    for (let i = 0; i < 50; i++) {
      body = (
        await env.http("GET", `/oauth2/ciba/${authReqId}`, {
          headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
        })
      ).json();
      if (body.status !== "PENDING") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(body.status).toBe("APPROVED");
    expect(body.session.sessionToken).toMatch(/^eps_/);
    // Another client cannot see the request.
    const other = await env.http("GET", `/oauth2/ciba/${authReqId}`, {
      headers: { "x-eproxy-api-key": env.keys["lps-other"] },
    });
    expect(other.status).toBe(404);
    expect(other.headers["content-type"]).toBe("application/problem+json");
    await env.auth().logout({ sessionToken: body.session.sessionToken });
  });

  it("a denial ends in DENIED (gRPC) and 403 problem (REST)", async () => {
    env.psc.settings.autoApproveMs = null;
    const started = await env
      .auth()
      .startCiba({ nationalId: DOCTOR, channel: Channel.MOBILE, bindingMessage: "12" });
    await env.psc.deny(pscIdFor(DOCTOR));
    const states = await watchUntilFinal(started.authReqId);
    expect(states.map((s) => s.status)).toEqual([CibaStatus.PENDING, CibaStatus.DENIED]);
    expect(states.at(-1)?.errorMessage).toMatch(/refused/);

    const rest = env.http("POST", "/oauth2/ciba", {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
      body: { nationalId: DOCTOR, bindingMessage: "13" },
    });
    await env.psc.deny((await pushFor(env.psc, DOCTOR)).authReqId);
    const res = await rest;
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ code: "AUTHENTICATION_DENIED", status: 403 });
  });

  it("an unanswered request ends in EXPIRED", async () => {
    env.psc.settings.autoApproveMs = null;
    env.psc.settings.cibaTtlSeconds = 2;
    try {
      const started = await env.auth().startCiba({ nationalId: PHARMACIST, bindingMessage: "14" });
      expect(started.expiresInSeconds).toBeLessThanOrEqual(2);
      const states = await watchUntilFinal(started.authReqId);
      expect(states.at(-1)?.status).toBe(CibaStatus.EXPIRED);
    } finally {
      env.psc.settings.cibaTtlSeconds = 120;
    }
  });

  it("honours slow_down (+5 s) and 503 Retry-After, measured at the simulator", async () => {
    env.psc.settings.autoApproveMs = null;
    env.psc.faults.slowDownPolls = 1;
    env.psc.faults.unavailablePolls = 1;
    env.psc.faults.retryAfterSeconds = 3;
    const started = await env.auth().startCiba({ nationalId: NURSE, bindingMessage: "15" });
    const pscId = pscIdFor(NURSE);
    // Poll 1: 503 + Retry-After 3; poll 2: slow_down (interval 1 → 6 s); poll 3: pending. At least
    // 9 s by design; the deadline leaves a busy machine room.
    await expect
      .poll(() => env.psc.stats.cibaPolls[pscId]?.length ?? 0, { timeout: 40_000, interval: 100 })
      .toBeGreaterThanOrEqual(3);
    const polls = env.psc.stats.cibaPolls[pscId] ?? [];
    expect(polls.length).toBeGreaterThanOrEqual(3);
    const gaps = polls.slice(1).map((t, i) => t - (polls[i] as number));
    expect(gaps[0]).toBeGreaterThanOrEqual(2_900);
    expect(gaps[1]).toBeGreaterThanOrEqual(5_900);
    await env.psc.approve(pscId);
    const states = await watchUntilFinal(started.authReqId);
    expect(states.at(-1)?.status).toBe(CibaStatus.APPROVED);
    await env.auth().logout({ sessionToken: states.at(-1)?.session?.sessionToken ?? "" });
  }, 60_000);

  it("does not push twice: a pending request, then a live session, are reused", async () => {
    env.psc.settings.autoApproveMs = null;
    const auth = env.auth();
    const a = await auth.startCiba({ nationalId: DOCTOR, bindingMessage: "20" });
    const b = await auth.startCiba({ nationalId: DOCTOR, bindingMessage: "21" });
    expect(b.reused).toBe(true);
    expect(b.authReqId).toBe(a.authReqId);
    expect(env.psc.stats.cibaRequests).toBe(1);
    await env.psc.approve(pscIdFor(DOCTOR));
    const token = (await watchUntilFinal(a.authReqId)).at(-1)?.session?.sessionToken ?? "";
    const c = await auth.startCiba({ nationalId: DOCTOR, bindingMessage: "22" });
    expect(c.reused).toBe(true);
    expect(c.authReqId).toBe("");
    expect(c.session?.professional?.nationalId).toBe(DOCTOR);
    expect(c.session?.sessionToken).toBe("");
    expect(env.psc.stats.cibaRequests).toBe(1);
    // Another client authenticating the same professional does push.
    const other = await env.auth("lps-other").startCiba({ nationalId: DOCTOR, bindingMessage: "23" });
    expect(other.reused).toBe(false);
    expect(env.psc.stats.cibaRequests).toBe(2);
    await auth.logout({ sessionToken: token });
  });

  it("starts a new session beside a live one when asked (newSession), for a backend that lost its token", async () => {
    env.psc.settings.autoApproveMs = null;
    const auth = env.auth();
    const pscIdOf = (bindingMessage: string) => {
      const found = env.psc
        .pending()
        .filter((p) => p.nationalId === PHARMACIST && p.bindingMessage === bindingMessage);
      expect(found).toHaveLength(1);
      return found[0]?.authReqId as string;
    };
    const pushes = env.psc.stats.cibaRequests;
    const a = await auth.startCiba({ nationalId: PHARMACIST, bindingMessage: "30", newSession: true });
    await env.psc.approve(pscIdOf("30"));
    const first = (await watchUntilFinal(a.authReqId)).at(-1)?.session?.sessionToken ?? "";
    expect(first).not.toBe("");
    // Without newSession the live session is reused (no push) ...
    const reused = await auth.startCiba({ nationalId: PHARMACIST, bindingMessage: "33" });
    expect(reused.reused).toBe(true);
    expect(reused.authReqId).toBe("");
    // ... with it, PSC pushes again.
    const again = await auth.startCiba({ nationalId: PHARMACIST, bindingMessage: "31", newSession: true });
    expect(again.reused).toBe(false);
    expect(again.authReqId).not.toBe("");
    expect(env.psc.stats.cibaRequests).toBe(pushes + 2);
    // A retry of that start reuses the pending request: still no duplicate push.
    const retry = await auth.startCiba({ nationalId: PHARMACIST, bindingMessage: "32", newSession: true });
    expect(retry.reused).toBe(true);
    expect(retry.authReqId).toBe(again.authReqId);
    expect(env.psc.stats.cibaRequests).toBe(pushes + 2);
    await env.psc.approve(pscIdOf("31"));
    const second = (await watchUntilFinal(again.authReqId)).at(-1)?.session?.sessionToken ?? "";
    expect(second).not.toBe("");
    expect(second).not.toBe(first);
    // Both sessions live: the new login ended nothing.
    for (const t of [first, second]) {
      const got = await auth.getSession({ sessionToken: t });
      expect(got.session?.professional?.nationalId).toBe(PHARMACIST);
      await auth.logout({ sessionToken: t });
    }
  }, 30_000);

  it("does not push twice when the same professional's sign-in is started concurrently", async () => {
    env.psc.settings.autoApproveMs = null;
    env.psc.reset();
    const auth = env.auth();
    const started = await Promise.all(
      Array.from({ length: 8 }, () => auth.startCiba({ nationalId: PHARMACIST, bindingMessage: "24" })),
    );
    expect(env.psc.stats.cibaRequests).toBe(1);
    expect(new Set(started.map((s) => s.authReqId)).size).toBe(1);
    expect(started.filter((s) => !s.reused)).toHaveLength(1);
    const pushed = env.psc.pending().filter((p) => p.nationalId === PHARMACIST && p.bindingMessage === "24");
    expect(pushed).toHaveLength(1);
    await env.psc.deny(pushed[0]?.authReqId as string);
    await watchUntilFinal(started[0]?.authReqId as string);
  });

  it("validates input and the caller", async () => {
    const auth = env.auth();
    for (const [req, pattern] of [
      [{ nationalId: "123" }, /nationalId/],
      [{ nationalId: DOCTOR, bindingMessage: "abc" }, /bindingMessage/],
    ] as const) {
      const e = await errorOf(auth.startCiba(req));
      expect(e.code).toBe(Code.InvalidArgument);
      expect(e.rawMessage).toMatch(pattern);
    }
    const e = await errorOf(auth.startCiba({ nationalId: DOCTOR, channel: 7 as Channel }));
    expect(e.code).toBe(Code.InvalidArgument);
    const wrongClient = await errorOf(auth.startCiba({ clientId: "lps-other", nationalId: DOCTOR }));
    expect(wrongClient.code).toBe(Code.PermissionDenied);
    const unknownPro = await errorOf(auth.startCiba({ nationalId: "899999999999" }));
    expect(unknownPro.code).toBe(Code.InvalidArgument);
    const rest = await env.http("POST", "/oauth2/ciba", { body: { nationalId: DOCTOR } });
    expect(rest.status).toBe(401);
    expect(rest.json()).toMatchObject({ code: "UNAUTHENTICATED" });
    const badKey = await env.http("POST", "/oauth2/ciba", {
      headers: { "x-eproxy-api-key": "epk_nope" },
      body: { nationalId: DOCTOR },
    });
    expect(badKey.status).toBe(401);
    const notJson = await env.http("POST", "/oauth2/ciba", {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"], "content-type": "application/json" },
      body: "{not json",
    });
    expect(notJson.status).toBe(400);
    expect(env.psc.stats.cibaRequests).toBe(0);
  });

  it("bounds the pending requests of one client", async () => {
    env.psc.settings.autoApproveMs = null;
    const small = await startAuthEnv({
      clientOverrides: { maxPendingCiba: 2 },
      psc: { autoApproveMs: null },
    });
    try {
      const auth = small.auth();
      await auth.startCiba({ nationalId: DOCTOR });
      await auth.startCiba({ nationalId: NURSE });
      const e = await errorOf(auth.startCiba({ nationalId: PHARMACIST }));
      expect(e.code).toBe(Code.ResourceExhausted);
      expect(small.psc.stats.cibaRequests).toBe(2);
      // The other client is not affected.
      await small.auth("lps-other").startCiba({ nationalId: PHARMACIST });
    } finally {
      await small.close();
    }
  });

  it("accepts an acr above the one asked (eidas2 for eidas1)", async () => {
    env.psc.settings.acr = "eidas2";
    try {
      const started = await env.auth().startCiba({ nationalId: PHARMACIST });
      const last = (await watchUntilFinal(started.authReqId)).at(-1);
      expect(last?.status).toBe(CibaStatus.APPROVED);
      expect(last?.session?.acr).toBe("eidas2");
      await env.auth().logout({ sessionToken: last?.session?.sessionToken ?? "" });
    } finally {
      env.psc.settings.acr = "eidas1";
    }
  });
});
