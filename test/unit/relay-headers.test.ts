import { describe, expect, it } from "vitest";
import { toDownstreamHeaders, toUpstreamHeaders } from "../../src/relay/headers.ts";
import { upstreamUrl } from "../../src/relay/relay.ts";

describe("relay header rules (RFC 9110 §7.6.1)", () => {
  it("drops hop-by-hop fields and every field named in Connection", () => {
    const up = toUpstreamHeaders({
      connection: "keep-alive, X-Trace-Hop",
      "keep-alive": "timeout=5",
      "transfer-encoding": "chunked",
      te: "trailers",
      upgrade: "h2c",
      "x-trace-hop": "1",
      "content-type": "application/soap+xml",
      "content-length": "1234",
      soapaction: '"urn:x"',
    });
    expect(up).toEqual({
      "content-type": "application/soap+xml",
      "content-length": "1234",
      soapaction: '"urn:x"',
    });
  });

  it("never forwards the caller's credentials, cookies, host, forwarding headers or eProxy's own", () => {
    const up = toUpstreamHeaders({
      authorization: "Bearer eps_session",
      cookie: "a=b",
      host: "eproxy.example",
      "x-api-key": "k",
      "x-eproxy-api-key": "epk_x",
      "x-eproxy-session": "eps_y",
      "x-forwarded-for": "10.0.0.1",
      forwarded: "for=10.0.0.1",
      "x-request-id": "r1",
      ":authority": "eproxy.example",
      "x-correlation-id": "c1",
      accept: "application/soap+xml",
    });
    expect(up).toEqual({ "x-correlation-id": "c1", accept: "application/soap+xml" });
  });

  it("joins repeated request fields with commas", () => {
    expect(toUpstreamHeaders({ accept: ["text/xml", "application/soap+xml"] })).toEqual({
      accept: "text/xml, application/soap+xml",
    });
  });

  it("passes answers through, hop-by-hop aside, and hides the correlation id unless asked", () => {
    const answer = {
      connection: "close",
      "content-type": "multipart/related; boundary=x",
      "set-cookie": ["a=1", "b=2"],
      "x-correlation-id": "c1",
      "x-registry-status": "Success",
    };
    expect(toDownstreamHeaders(answer, false)).toEqual({
      "content-type": "multipart/related; boundary=x",
      "set-cookie": ["a=1", "b=2"],
      "x-registry-status": "Success",
    });
    expect(toDownstreamHeaders(answer, true)["x-correlation-id"]).toBe("c1");
  });

  it("never lets a teleservice answer with eProxy's own headers (x-eproxy-error marks eProxy's answers)", () => {
    const answer = {
      "content-type": "application/soap+xml",
      "x-eproxy-error": "SESSION_INVALID",
      "X-Eproxy-Session": "eps_x",
    };
    expect(toDownstreamHeaders(answer, false)).toEqual({ "content-type": "application/soap+xml" });
  });
});

describe("upstream path joining", () => {
  const join = (base: string, p: string) => upstreamUrl(base, p).href;

  it("appends the path to the base, whatever the slashes, and keeps the query", () => {
    expect(join("https://dmp.example/si-dmp-server/v2/services", "registry")).toBe(
      "https://dmp.example/si-dmp-server/v2/services/registry",
    );
    expect(join("https://dmp.example/si-dmp-server/v2/services/", "/registry//x")).toBe(
      "https://dmp.example/si-dmp-server/v2/services/registry/x",
    );
    expect(join("https://ameli.example/lps", "")).toBe("https://ameli.example/lps");
    expect(join("https://ameli.example/", "")).toBe("https://ameli.example/");
    expect(join("https://ameli.example/lps", "op?x=1&y=%2F")).toBe("https://ameli.example/lps/op?x=1&y=%2F");
    expect(join("https://ameli.example/lps", "op?x=1?y")).toBe("https://ameli.example/lps/op?x=1?y");
    // What a URL string would trim or cut is encoded, as the URL setters do.
    expect(join("https://ameli.example/lps", "a#b?c#d")).toBe("https://ameli.example/lps/a%23b?c%23d");
    expect(join("https://ameli.example/lps", ".. ")).toBe("https://ameli.example/lps/..%20");
    expect(join("https://ameli.example/lps?k=1", "op")).toBe("https://ameli.example/lps/op?k=1");
  });

  it("refuses paths that would leave the base", () => {
    // `.%2e`, `%2e.` and `%2e` are dot segments to the URL parser too (`x/.%2e/.%2e/admin` left the base).
    for (const p of [
      "../admin",
      "a/../../b",
      "./x",
      "%2e%2e/x",
      "a%2Fb",
      "a%5cb",
      "a\\b",
      "x/.%2e/.%2e/admin",
      "%2E./x",
      "%2e/x",
    ]) {
      expect(() => upstreamUrl("https://dmp.example/services", p), p).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
    }
  });
});
