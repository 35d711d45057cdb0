import { describe, expect, it } from "vitest";
import { EproxyError, ERROR_CODES, type ErrorCode } from "../../src/errors.ts";
import { soapVersionOf, toSoapFault } from "../../src/relay/soap-fault.ts";
import { toProblem } from "../../src/rest/problem.ts";
import { toConnectError } from "../../src/rpc/connect-errors.ts";
import { recordRefusal } from "../../src/trace/refusals.ts";
import type { TraceInput } from "../../src/trace/traces.ts";

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

describe("refusal traces", () => {
  const record = (err: unknown, clientId?: string) => {
    const out: TraceInput[] = [];
    recordRefusal(
      { record: (e) => out.push(e) },
      { ...(clientId ? { clientId } : {}), method: "POST", path: `/send/insi/${"x".repeat(300)}` },
      err,
    );
    expect(out).toHaveLength(1);
    return out[0] as TraceInput;
  };

  it("says REJECTED when the caller was refused, with the code", () => {
    for (const code of [
      "UNAUTHENTICATED",
      "SESSION_INVALID",
      "PERMISSION_DENIED",
      "INVALID_ARGUMENT",
    ] as const) {
      expect(record(new EproxyError(code, "x"), "lps-demo")).toMatchObject({
        type: "REJECTED",
        clientId: "lps-demo",
        method: "POST",
        outcome: code,
      });
    }
  });

  it("says FAILED when PSC, a store, a teleservice or eProxy itself failed", () => {
    for (const code of [
      "PSC_UNAVAILABLE",
      "STORE_UNAVAILABLE",
      "UPSTREAM_TIMEOUT",
      "UPSTREAM_UNAVAILABLE",
    ] as const) {
      expect(record(new EproxyError(code, "x")).type).toBe("FAILED");
    }
    expect(record(new Error("mongo internals"))).toMatchObject({ type: "FAILED", outcome: "INTERNAL" });
  });

  it("bounds the recorded path and omits an unknown caller", () => {
    const t = record(new EproxyError("UNAUTHENTICATED", "x"));
    expect(t.path).toHaveLength(200);
    expect(t).not.toHaveProperty("clientId");
  });
});

describe("one error, three boundaries", () => {
  it("every code has the same HTTP status as problem+json and as a SOAP fault, and a Connect code", () => {
    for (const code of CODES) {
      const e = new EproxyError(code, `public ${code}`);
      const problem = toProblem(e);
      expect(problem.status, code).toBe(ERROR_CODES[code].status);
      expect(problem.detail).toBe(`public ${code}`);
      expect(problem.type).toBe(`urn:eproxy:error:${code.toLowerCase().replaceAll("_", "-")}`);
      for (const v of ["1.1", "1.2"] as const) expect(toSoapFault(e, v).status, code).toBe(problem.status);
      const c = toConnectError(e);
      expect(c.rawMessage).toBe(`public ${code}`);
      expect(c.metadata.get("x-eproxy-error")).toBe(code);
    }
  });

  it("the SOAP fault side follows the code: Sender for the caller's faults, Receiver for eProxy's", () => {
    for (const code of CODES) {
      const f = toSoapFault(new EproxyError(code, "x"), soapVersionOf("application/soap+xml"));
      expect(f.body, code).toContain(`<env:Value>env:${ERROR_CODES[code].side}</env:Value>`);
    }
  });

  it("carries Retry-After where the domain gave one, rounded up, at least one second", () => {
    const e = new EproxyError("TOO_MANY_REQUESTS", "slow down", { retryAfterSeconds: 0.2 });
    expect(toConnectError(e).metadata.get("retry-after")).toBe("1");
  });
});
