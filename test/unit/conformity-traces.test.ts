import { describe, expect, it } from "vitest";
import { checkTraces, type TraceJson } from "../../src/conformity/check-traces.ts";

const expected = {
  clientId: "lps-demo",
  proxySessionId: "sess-1",
  sessionState: "ss-1",
  service: "signsessiondata",
  path: "/apipsc/signsessiondata",
};
const common = {
  clientId: "lps-demo",
  sessionHash: "sess-1",
  sessionState: "ss-1",
  certificateDn: "CN=lps-demo",
};
const login: TraceJson = { type: "CONNECT_SUCCESS", ...common };
const send: TraceJson = {
  type: "SEND",
  ...common,
  service: "signsessiondata",
  path: "/apipsc/signsessiondata",
};
const logout: TraceJson = { type: "DISCONNECT", ...common };

describe("the conformity test's trace check", () => {
  it("passes with the login, the SEND and the logout of the session, each complete", () => {
    expect(checkTraces([login, send, logout], expected).map((v) => v.ok)).toEqual([true, true, true]);
  });

  it("names the missing trace, ignoring the traces of other sessions", () => {
    const other = { ...logout, sessionHash: "sess-2" };
    const [, , out] = checkTraces([login, send, other], expected);
    expect(out).toMatchObject({ trace: "logout", ok: false });
    expect(out?.detail).toMatch(/^logout trace \(DISCONNECT\) missing/);
  });

  it("names the field a trace lacks or gets wrong", () => {
    const { sessionState: _, ...noState } = send;
    const [, s] = checkTraces([login, noState, logout], expected);
    expect(s?.detail).toBe("send trace (SEND) incomplete: sessionState missing");
    const [, p] = checkTraces(
      [login, { ...send, path: "/other" }, { ...logout, certificateDn: "" }],
      expected,
    );
    expect(p?.detail).toBe(
      'send trace (SEND) incomplete: path is "/other", expected "/apipsc/signsessiondata"',
    );
    expect(checkTraces([login, send, { ...logout, certificateDn: "" }], expected)[2]?.detail).toBe(
      "logout trace (DISCONNECT) incomplete: certificateDn missing",
    );
  });
});
