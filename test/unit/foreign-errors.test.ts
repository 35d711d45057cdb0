import * as oidc from "openid-client";
import { describe, expect, it } from "vitest";
import { EproxyError } from "../../src/errors.ts";
import {
  codesOf,
  isNonConformingAnswer,
  oauthErrorOf,
  ownError,
  peerRefusedCertificate,
  retryAfterMs,
  transportFailureOf,
} from "../../src/infra/foreign-errors.ts";
import { toUpstreamError } from "../../src/infra/upstream-undici.ts";

/** An error with a code, wrapped the way fetch wraps undici's (`TypeError: fetch failed`). */
function wrapped(code: string, depth = 2): Error {
  let e: Error = Object.assign(new Error(code), { code });
  for (let i = 0; i < depth; i++) e = new TypeError("fetch failed", { cause: e });
  return e;
}

describe("foreign error classification", () => {
  it("walks cause chains to find the codes, and stops on a cyclic chain", () => {
    expect(codesOf(wrapped("UND_ERR_HEADERS_TIMEOUT", 3))).toEqual(["UND_ERR_HEADERS_TIMEOUT"]);
    const a = Object.assign(new Error("a"), { code: "A" }) as Error & { cause?: unknown };
    a.cause = a;
    expect(codesOf(a)).toHaveLength(8);
  });

  it("classifies undici, socket and TLS failures in the order that decides", () => {
    expect(transportFailureOf(wrapped("UND_ERR_HEADERS_TIMEOUT"))).toBe("timeout");
    expect(transportFailureOf(wrapped("UND_ERR_BODY_TIMEOUT"))).toBe("timeout");
    expect(transportFailureOf(new DOMException("timed out", "TimeoutError"))).toBe("timeout");
    expect(transportFailureOf(wrapped("UNABLE_TO_VERIFY_LEAF_SIGNATURE"))).toBe("tls");
    expect(transportFailureOf(wrapped("ERR_TLS_CERT_ALTNAME_INVALID"))).toBe("tls");
    expect(transportFailureOf(wrapped("DEPTH_ZERO_SELF_SIGNED_CERT"))).toBe("tls");
    expect(transportFailureOf(wrapped("ECONNREFUSED"))).toBe("connect");
    expect(transportFailureOf(wrapped("UND_ERR_CONNECT_TIMEOUT"))).toBe("connect");
    expect(transportFailureOf(wrapped("UND_ERR_ABORTED"))).toBe("aborted");
    expect(transportFailureOf(wrapped("UND_ERR_SOCKET"))).toBe("closed");
    expect(transportFailureOf(new Error("no code at all"))).toBe("closed");
  });

  it("maps them to the relay's codes with a public message naming the teleservice only", () => {
    const cases: [string, string][] = [
      ["UND_ERR_HEADERS_TIMEOUT", "UPSTREAM_TIMEOUT"],
      ["CERT_HAS_EXPIRED", "UPSTREAM_BAD_RESPONSE"],
      ["ENOTFOUND", "UPSTREAM_UNAVAILABLE"],
      ["ABORT_ERR", "UNAVAILABLE"],
      ["ECONNRESET", "UPSTREAM_BAD_RESPONSE"],
    ];
    for (const [code, expected] of cases) {
      const e = toUpstreamError(wrapped(code), "insi");
      expect(e.code, code).toBe(expected);
      expect(e.message).not.toContain(code);
      expect(e.cause).toBeDefined();
    }
  });

  it("keeps eProxy's own error when a hook of ours threw it inside a library", () => {
    const own = new EproxyError("PERMISSION_DENIED", "unknown client");
    const err = new TypeError("fetch failed", { cause: own });
    expect(ownError(err)).toBe(own);
    expect(toUpstreamError(err, "insi")).toBe(own);
  });

  it("reads OAuth errors from openid-client failures, and tells a bad answer from an unreachable server", () => {
    const body = new oidc.ResponseBodyError("server responded with an error", {
      cause: { error: "invalid_grant" },
      response: new Response(null, { status: 400 }),
    } as never);
    expect(oauthErrorOf(new oidc.ClientError("x", { cause: body }))).toEqual({
      error: "invalid_grant",
      status: 400,
    });
    expect(oauthErrorOf(new Error("plain"))).toBeUndefined();
    // A PSC that does not answer in time (a partition) is unreachable, not a bad answer.
    const timedOut = Object.assign(
      new oidc.ClientError("operation timed out", { cause: new DOMException("timed out", "TimeoutError") }),
      { code: "OAUTH_TIMEOUT" },
    );
    expect(isNonConformingAnswer(timedOut)).toBe(false);
    expect(isNonConformingAnswer(new oidc.ClientError("invalid response"))).toBe(true);
    expect(
      isNonConformingAnswer(new oidc.ClientError("fetch", { cause: new TypeError("fetch failed") })),
    ).toBe(false);
  });

  it("reads a refused client certificate in every OpenSSL spelling of the alert, and only that", () => {
    // OpenSSL <= 3.1 (SSLV3_ALERT_*), >= 3.2 as in Node 24's 3.5 (SSL/TLS_ALERT_*), TLS 1.x/1.3 alerts.
    expect(peerRefusedCertificate(wrapped("ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN"))).toBe(
      "CERTIFICATE_UNKNOWN",
    );
    expect(peerRefusedCertificate(wrapped("ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_UNKNOWN"))).toBe(
      "CERTIFICATE_UNKNOWN",
    );
    expect(peerRefusedCertificate(wrapped("ERR_SSL_SSL/TLS_ALERT_BAD_CERTIFICATE"))).toBe("BAD_CERTIFICATE");
    expect(peerRefusedCertificate(wrapped("ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE"))).toBe(
      "HANDSHAKE_FAILURE",
    );
    expect(peerRefusedCertificate(wrapped("ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"))).toBe("UNKNOWN_CA");
    expect(peerRefusedCertificate(wrapped("ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"))).toBe(
      "CERTIFICATE_REQUIRED",
    );
    // Not a refusal of our certificate: the peer's own certificate, or an unrelated alert.
    expect(peerRefusedCertificate(wrapped("UNABLE_TO_VERIFY_LEAF_SIGNATURE"))).toBeUndefined();
    expect(peerRefusedCertificate(wrapped("ERR_SSL_SSL/TLS_ALERT_BAD_RECORD_MAC"))).toBeUndefined();
    expect(peerRefusedCertificate(wrapped("ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION"))).toBeUndefined();
  });

  it("reads Retry-After in seconds or as an HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(retryAfterMs("30", now)).toBe(30_000);
    expect(retryAfterMs("Thu, 01 Jan 2026 00:01:00 GMT", now)).toBe(60_000);
    expect(retryAfterMs("soon", now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });
});
