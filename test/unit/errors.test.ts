import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { EproxyError } from "../../src/errors.ts";
import { soapVersionOf, toSoapFault } from "../../src/relay/soap-fault.ts";
import { toProblem } from "../../src/rest/problem.ts";
import { toConnectError } from "../../src/rpc/connect-errors.ts";

describe("error mappers", () => {
  it("maps domain codes to Connect codes with the public message only", () => {
    const e = toConnectError(
      new EproxyError("SESSION_INVALID", "session expired", { cause: new Error("redis key x") }),
    );
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.rawMessage).toBe("session expired");
    expect(e.metadata.get("x-eproxy-error")).toBe("SESSION_INVALID");
    expect(toConnectError(new EproxyError("UPSTREAM_TIMEOUT", "t")).code).toBe(Code.DeadlineExceeded);
    expect(toConnectError(new EproxyError("PAYLOAD_TOO_LARGE", "t")).code).toBe(Code.ResourceExhausted);
  });

  it("never leaks foreign errors", () => {
    const foreign = new Error("MongoServerError: E11000 duplicate key in eproxy.sessions token=abc");
    const c = toConnectError(foreign);
    expect(c.code).toBe(Code.Internal);
    expect(c.rawMessage).toBe("internal error");
    const p = toProblem(foreign, "req-1");
    expect(p).toEqual({
      type: "urn:eproxy:error:internal",
      title: "Internal error",
      status: 500,
      detail: "internal error",
      code: "INTERNAL",
      requestId: "req-1",
    });
    expect(toSoapFault(foreign, "1.2").body).not.toContain("E11000");
    // A ConnectError raised on purpose passes through untouched.
    const own = new ConnectError("x", Code.Aborted);
    expect(toConnectError(own)).toBe(own);
  });

  it("renders RFC 9457 problems with the code's status", () => {
    expect(toProblem(new EproxyError("NOT_FOUND", "no route for /x"))).toMatchObject({
      type: "urn:eproxy:error:not-found",
      status: 404,
      detail: "no route for /x",
    });
  });

  it("renders SOAP 1.2 faults with Code, Subcode and a French reason", () => {
    const f = toSoapFault(new EproxyError("REAUTHENTICATION_REQUIRED", "refresh token expired"), "1.2");
    expect(f.status).toBe(401);
    expect(f.contentType).toBe("application/soap+xml; charset=utf-8");
    expect(f.body).toContain("<env:Value>env:Sender</env:Value>");
    expect(f.body).toContain("<env:Subcode><env:Value>ep:ReauthenticationRequired</env:Value></env:Subcode>");
    expect(f.body).toContain('<env:Text xml:lang="fr">La session a expiré');
    expect(f.body).not.toContain("refresh token expired");
  });

  it("renders SOAP 1.1 faults with faultcode Client/Server", () => {
    const f = toSoapFault(new EproxyError("UPSTREAM_UNAVAILABLE", "x"), "1.1");
    expect(f.status).toBe(503);
    expect(f.contentType).toBe("text/xml; charset=utf-8");
    expect(f.body).toContain("<faultcode>soap:Server</faultcode>");
    expect(toSoapFault(new EproxyError("PAYLOAD_TOO_LARGE", "x"), "1.1").body).toContain("soap:Client");
  });

  it("detects the SOAP version from the content type, MTOM included", () => {
    expect(soapVersionOf('application/soap+xml; charset=utf-8; action="urn:x"')).toBe("1.2");
    expect(
      soapVersionOf(
        'multipart/related; type="application/xop+xml"; start="<a>"; start-info="application/soap+xml"',
      ),
    ).toBe("1.2");
    expect(soapVersionOf("text/xml; charset=utf-8")).toBe("1.1");
    expect(soapVersionOf(undefined)).toBe("1.1");
  });
});
