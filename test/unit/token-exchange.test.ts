import { MockAgent } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfig, type TeleserviceConfig } from "../../src/config.ts";
import { EproxyError } from "../../src/errors.ts";
import { createOpenidTokenExchange } from "../../src/infra/token-exchange-openid.ts";
import type { TokenExchange } from "../../src/relay/ports.ts";

const AS = "https://auth-lps.dmp.example";
const config = parseConfig(
  {
    server: { tls: { certFile: "server.pem", keyFile: "server-key.pem" } },
    psc: { discoveryUrl: "https://psc.example/.well-known/wallet-openid-configuration" },
    clients: [{ id: "lps-demo", certFile: "c.pem", keyFile: "k.pem", allowedServices: ["dmp"] }],
    teleservices: [
      {
        name: "dmp",
        upstreamUrl: "https://api-lps.dmp.example/si-dmp-server/v2/services",
        tokenExchange: { endpoint: `${AS}/api/token`, scope: "dmp", audience: "dmp-api" },
      },
    ],
  },
  {},
);
const dmp = config.teleservices[0] as TeleserviceConfig;
const silent = { warn() {}, info() {}, error() {}, debug() {} } as never;

describe("token exchange (RFC 8693 through openid-client)", () => {
  let mock: MockAgent;
  let exchange: TokenExchange;
  const seen: { body: URLSearchParams; headers: Record<string, string> }[] = [];

  beforeEach(() => {
    mock = new MockAgent();
    mock.disableNetConnect();
    seen.length = 0;
    exchange = createOpenidTokenExchange({ dispatcherFor: () => mock, log: silent });
  });
  afterEach(() => mock.close());

  function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
    mock
      .get(AS)
      .intercept({ path: "/api/token", method: "POST" })
      .reply(({ body: sent, headers: h }) => {
        seen.push({ body: new URLSearchParams(String(sent)), headers: h as Record<string, string> });
        return {
          statusCode: status,
          data: typeof body === "string" ? body : JSON.stringify(body),
          responseOptions: {
            headers: {
              "content-type": typeof body === "string" ? "text/html" : "application/json",
              ...headers,
            },
          },
        };
      });
  }
  const run = () => exchange.exchange({ clientId: "lps-demo", teleservice: dmp, subjectToken: "psc-at" });
  const failure = async () => {
    const err = await run().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EproxyError);
    return err as EproxyError;
  };

  it("sends the token-exchange grant with tls_client_auth's client_id and the configured parameters", async () => {
    answer(200, { access_token: "api-1", token_type: "Bearer", expires_in: 300 });
    expect(await run()).toEqual({ accessToken: "api-1", expiresInSeconds: 300 });
    const form = seen[0]?.body as URLSearchParams;
    expect(Object.fromEntries(form)).toEqual({
      grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
      client_id: "lps-demo",
      subject_token: "psc-at",
      subject_token_type: "urn:ietf:params:oauth:token-type:access_token",
      requested_token_type: "urn:ietf:params:oauth:token-type:access_token",
      scope: "dmp",
      audience: "dmp-api",
      subject_issuer: "psc",
    });
  });

  it("assumes one hour when the server gives no lifetime", async () => {
    answer(200, { access_token: "api-2", token_type: "Bearer" });
    expect((await run()).expiresInSeconds).toBe(3600);
  });

  it("invalid_grant: the PSC session is no longer good → REAUTHENTICATION_REQUIRED", async () => {
    answer(400, { error: "invalid_grant", error_description: "subject token inactive" });
    expect((await failure()).code).toBe("REAUTHENTICATION_REQUIRED");
  });

  it("another OAuth error, or an answer without a token → UPSTREAM_BAD_RESPONSE", async () => {
    answer(400, { error: "invalid_request" });
    expect((await failure()).code).toBe("UPSTREAM_BAD_RESPONSE");
    answer(200, { token_type: "Bearer" });
    expect((await failure()).code).toBe("UPSTREAM_BAD_RESPONSE");
    answer(200, "<html>not json</html>");
    expect((await failure()).code).toBe("UPSTREAM_BAD_RESPONSE");
  });

  it("a 5xx (JSON or a load balancer's HTML) → TOKEN_EXCHANGE_UNAVAILABLE naming the AS, with Retry-After", async () => {
    answer(503, "<html>maintenance</html>", { "retry-after": "30" });
    const e = await failure();
    expect(e.code).toBe("TOKEN_EXCHANGE_UNAVAILABLE");
    expect(e.message).toBe(
      "token exchange unavailable: authorization server of dmp (auth-lps.dmp.example) answered HTTP 503",
    );
    expect(e.retryAfterSeconds).toBe(30);
    answer(500, { error: "server_error" });
    expect((await failure()).code).toBe("TOKEN_EXCHANGE_UNAVAILABLE");
  });

  it("a connection that cannot be opened → TOKEN_EXCHANGE_UNAVAILABLE, not the teleservice", async () => {
    mock
      .get(AS)
      .intercept({ path: "/api/token", method: "POST" })
      .replyWithError(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }));
    const e = await failure();
    expect(e.code).toBe("TOKEN_EXCHANGE_UNAVAILABLE");
    expect(e.message).toBe(
      "token exchange unavailable: authorization server of dmp (auth-lps.dmp.example) is unreachable",
    );
  });

  it("the AS refusing our certificate in the TLS handshake → PERMISSION_DENIED (credentials)", async () => {
    mock
      .get(AS)
      .intercept({ path: "/api/token", method: "POST" })
      .replyWithError(
        Object.assign(new Error("tlsv1 alert unknown ca"), { code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA" }),
      );
    const e = await failure();
    expect(e.code).toBe("PERMISSION_DENIED");
    expect(e.message).toMatch(/auth-lps\.dmp\.example.*refused this client's certificate \(TLS unknown_ca\)/);
  });
});
