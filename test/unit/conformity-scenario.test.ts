import { CompactSign, exportJWK, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import { jwsSignatureCheck } from "../../src/conformity/conformity.ts";
import { type ConformityHttp, runScenario, type ScenarioOptions } from "../../src/conformity/scenario.ts";

/**
 * The scenario's verdicts on a proxy that misbehaves, with an in-memory eProxy: each failure is
 * named by its step, and the session is logged out whatever failed.
 */
type Answer = { status: number; headers?: Record<string, string>; body: unknown };
function fakeProxy(answers: {
  login?: Answer;
  send?: (data: Record<string, string>) => Promise<Answer> | Answer;
}) {
  const calls: string[] = [];
  const traces: unknown[] = [];
  const http: ConformityHttp = {
    async request(method, path, init = {}) {
      calls.push(`${method} ${path.split("?")[0]}`);
      const a: Answer =
        method === "POST" && path === "/oauth2/ciba"
          ? (answers.login ?? {
              status: 200,
              body: {
                status: "APPROVED",
                session: { sessionToken: "eps_x", proxySessionId: "p1", sessionState: "ss1" },
              },
            })
          : method === "POST" && path.startsWith("/send/")
            ? await (answers.send ?? ((d) => ({ status: 200, body: { ...d, signature: "sig" } })))(
                init.json as Record<string, string>,
              )
            : method === "DELETE"
              ? { status: 200, body: { loggedOut: true } }
              : { status: 200, body: traces };
      return { status: a.status, headers: a.headers ?? {}, text: JSON.stringify(a.body) };
    },
  };
  return { http, calls };
}
const opts: ScenarioOptions = {
  clientId: "lps-demo",
  nationalId: "899700218896",
  service: "signsessiondata",
  path: "apipsc/signsessiondata",
  channel: "MOBILE",
  tracesWaitMs: 0,
  sleep: async () => {},
};
const verdicts = (r: { steps: Array<{ step: string; verdict: string }> }) =>
  Object.fromEntries(r.steps.map((s) => [s.step, s.verdict]));

describe("the conformity scenario", () => {
  it("a refused login skips the rest and fails, naming the step", async () => {
    const { http, calls } = fakeProxy({
      login: { status: 403, body: { code: "AUTHENTICATION_DENIED", detail: "the professional refused" } },
    });
    const r = await runScenario(http, opts);
    expect(r.ok).toBe(false);
    expect(r.steps[0]).toEqual({
      step: "login",
      verdict: "fail",
      detail: "CIBA login not approved: HTTP 403: the professional refused",
    });
    expect(verdicts(r)).toMatchObject({ relay: "skip", signature: "skip", logout: "skip", traces: "skip" });
    expect(calls).toEqual(["POST /oauth2/ciba"]);
  });

  it("a session without session_state fails the session data step", async () => {
    const { http } = fakeProxy({
      login: {
        status: 200,
        body: { status: "APPROVED", session: { sessionToken: "eps_x", proxySessionId: "p1" } },
      },
    });
    const r = await runScenario(http, opts);
    expect(r.steps[1]).toMatchObject({
      step: "session data",
      verdict: "fail",
      detail: "the session answer lacks sessionState",
    });
  });

  it("a relay error still logs the session out; the traces step names every missing trace", async () => {
    const { http, calls } = fakeProxy({
      send: () => ({
        status: 502,
        body: { code: "UPSTREAM_BAD_RESPONSE", detail: "teleservice answered HTML" },
      }),
    });
    const r = await runScenario(http, opts);
    expect(verdicts(r)).toMatchObject({ relay: "fail", signature: "skip", logout: "ok", traces: "fail" });
    expect(calls).toContain("DELETE /oauth2/session");
    expect(r.traces.map((t) => t.ok)).toEqual([false, false, false]);
  });

  it("checks the JWS against the published keys: a signature over other data, or by another key, fails", async () => {
    const mock = await generateKeyPair("ES256", { extractable: true });
    const other = await generateKeyPair("ES256", { extractable: true });
    const jwks = { keys: [{ ...(await exportJWK(mock.publicKey)), kid: "k1", alg: "ES256" }] };
    const sign = (data: unknown, key = mock.privateKey) =>
      new CompactSign(Buffer.from(JSON.stringify(data)))
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .sign(key);
    const run = (send: (d: Record<string, string>) => Promise<Answer>) =>
      runScenario(fakeProxy({ send }).http, {
        ...opts,
        verifySignature: jwsSignatureCheck(async () => jwks),
      });

    const good = await run(async (d) => ({ status: 200, body: { ...d, signature: await sign(d) } }));
    expect(good.steps.find((s) => s.step === "signature")).toMatchObject({
      verdict: "ok",
      detail: "ES256 JWS by key k1 over the session data",
    });
    const tampered = await run(async (d) => ({
      status: 200,
      body: { ...d, signature: await sign({ ...d, nationalId: "899700366240" }) },
    }));
    expect(tampered.steps.find((s) => s.step === "signature")?.detail).toBe(
      "does not verify: the signed payload differs from the session data (nationalId)",
    );
    const forged = await run(async (d) => ({
      status: 200,
      body: { ...d, signature: await sign(d, other.privateKey) },
    }));
    expect(forged.steps.find((s) => s.step === "signature")).toMatchObject({ verdict: "fail" });
    // No keys given: present, not verified, a warning that does not fail the run by itself.
    const unverified = await runScenario(fakeProxy({}).http, opts);
    expect(unverified.steps.find((s) => s.step === "signature")?.verdict).toBe("warn");
  });
});
