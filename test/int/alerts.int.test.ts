/**
 * Misuse alerts: thresholds crossed through the real services raise one ALERT trace and block the
 * offender with TOO_MANY_REQUESTS + Retry-After, on every protocol; counts are shared by replicas.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import { ACTIONS, insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, DOCTOR, NURSE, PHARMACIST, startAuthEnv } from "../support/auth-env.ts";
import { pushFor } from "../support/psc-wait.ts";

const redisUrl = inject("redisUrl");
const SOAP12 = `application/soap+xml; charset=utf-8; action="${ACTIONS.insiSearch}"`;

async function login(env: AuthEnv, nationalId: string, baseUrl?: string): Promise<string> {
  return cibaLogin(env.auth("lps-demo", "grpc", baseUrl), nationalId);
}

async function alerts(env: AuthEnv, since: number) {
  await env.deps.traces.flush();
  const all = await env.deps.traceStore.query({ start: since, end: Date.now() + 1_000, limit: 1_000 });
  return all.filter((t) => t.type === "ALERT");
}

describe("misuse alerts", () => {
  let env: AuthEnv;
  beforeAll(async () => {
    env = await startAuthEnv({
      extra: {
        alerts: {
          cibaFailures: { max: 2, windowSeconds: 60, block: true },
          relaysPerSession: { max: 3, windowSeconds: 60, block: true },
        },
      },
    });
  });
  afterAll(async () => {
    await env?.close();
  });

  it("repeated CIBA failures for one professional raise one alert, then block new pushes to them", async () => {
    const since = Date.now();
    env.psc.settings.autoApproveMs = null;
    try {
      for (let i = 0; i < 3; i++) {
        const started = await env.auth().startCiba({ nationalId: NURSE, bindingMessage: "42" });
        await env.psc.deny((await pushFor(env.psc, NURSE)).authReqId);
        let last: any;
        for await (const m of env.auth().watchCiba({ authReqId: started.authReqId })) last = m;
        expect(last.status).toBe(CibaStatus.DENIED);
      }
      const pushes = env.psc.stats.cibaRequests;
      await expect(env.auth().startCiba({ nationalId: NURSE })).rejects.toMatchObject({
        code: 8, // RESOURCE_EXHAUSTED
        rawMessage: expect.stringMatching(/too many failed authentications/),
      });
      const rest = await env.http("POST", "/oauth2/ciba?mode=async", {
        headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
        body: { nationalId: NURSE },
      });
      expect(rest.status).toBe(429);
      expect(rest.headers["content-type"]).toBe("application/problem+json");
      expect(Number(rest.headers["retry-after"])).toBeGreaterThan(0);
      expect(Number(rest.headers["retry-after"])).toBeLessThanOrEqual(60);
      // The professional's phone was not notified again.
      expect(env.psc.stats.cibaRequests).toBe(pushes);
    } finally {
      env.psc.settings.autoApproveMs = 200;
    }
    // Other professionals are not affected.
    await env.auth().logout({ sessionToken: await login(env, PHARMACIST) });

    const raised = await alerts(env, since);
    expect(raised).toHaveLength(1);
    expect(raised[0]).toMatchObject({ clientId: "lps-demo", nationalId: NURSE });
    expect(raised[0]?.outcome).toMatch(/^CIBA_FAILURES: more than 2 in 60 s \(blocked\)/);
  });

  it("a session relaying faster than allowed gets one alert and 429 SOAP faults / RESOURCE_EXHAUSTED", async () => {
    const since = Date.now();
    const token = await login(env, DOCTOR);
    const relay = env.grpc(RelayService);
    const soap = new TextEncoder().encode(insiSearchRequest("MARTIN"));
    const forward = (sessionToken: string) =>
      relay.forwardSoap({ sessionToken, service: "insi", contentType: SOAP12, body: soap });
    for (let i = 0; i < 3; i++) expect((await forward(token)).statusCode).toBe(200);
    await expect(forward(token)).rejects.toMatchObject({ code: 8 });
    const rest = await env.http("POST", "/send/insi", {
      headers: {
        "x-eproxy-api-key": env.keys["lps-demo"],
        authorization: `Bearer ${token}`,
        "content-type": SOAP12,
      },
      body: insiSearchRequest("MARTIN"),
    });
    expect(rest.status).toBe(429);
    expect(rest.headers["content-type"]).toMatch(/^application\/soap\+xml/);
    expect(rest.body).toMatch(/<\w+:Fault>/);
    expect(rest.body).toContain("Trop de requêtes");
    expect(Number(rest.headers["retry-after"])).toBeGreaterThan(0);

    // Another session of the same client is not affected.
    const other = await login(env, PHARMACIST);
    expect((await forward(other)).statusCode).toBe(200);

    const raised = await alerts(env, since);
    expect(raised).toHaveLength(1);
    expect(raised[0]).toMatchObject({ clientId: "lps-demo", nationalId: DOCTOR });
    expect(raised[0]?.sessionHash).toBeTruthy();
    expect(raised[0]?.outcome).toMatch(/^RELAY_RATE: more than 3 in 60 s \(blocked\)/);
    // No token in the alert.
    expect(JSON.stringify(raised)).not.toContain(token);
  });
});

describe.skipIf(!redisUrl)("misuse counts shared by replicas (Redis)", () => {
  let env: AuthEnv;
  beforeAll(async () => {
    env = await startAuthEnv({
      redisUrl,
      extra: { alerts: { relaysPerSession: { max: 4, windowSeconds: 60, block: true } } },
    });
  });
  afterAll(async () => {
    await env?.close();
  });

  it("relays split between two replicas count against one limit", async () => {
    const replica = await env.replica();
    const token = await login(env, DOCTOR);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await env.http("POST", "/send/insi", {
        baseUrl: i % 2 === 0 ? env.url : replica,
        headers: {
          "x-eproxy-api-key": env.keys["lps-demo"],
          authorization: `Bearer ${token}`,
          "content-type": SOAP12,
        },
        body: insiSearchRequest("MARTIN"),
      });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  });
});
