/**
 * The in-network listener: cleartext HTTP/1.1 and h2c on one port, API keys only. A module relays
 * SOAP over plain HTTP with an API key, without one it gets 401, gRPC over h2c works, and eProxy
 * warns at start when the listener is bound to a wildcard (or public) address.
 */
import http from "node:http";
import { Writable } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/eproxy/v1/auth_pb.ts";
import { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import { parseConfig } from "../../src/config.ts";
import { createDeps } from "../../src/deps.ts";
import { exposureOf } from "../../src/internal-listener.ts";
import { insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { startServer } from "../../src/server.ts";
import { type AuthEnv, cibaLogin, DOCTOR, startAuthEnv } from "../support/auth-env.ts";
import { expectDocumentedAnswer } from "../support/openapi.ts";
import { baseRawConfig } from "../support/server.ts";

const SOAP12 = "application/soap+xml; charset=utf-8";
let env: AuthEnv;
let token = "";

beforeAll(async () => {
  env = await startAuthEnv({ server: { internalListener: { listenAddress: "127.0.0.1", port: 0 } } });
  token = await cibaLogin(env.auth(), DOCTOR);
});
afterAll(async () => {
  await env?.close();
});

/** A plain HTTP/1.1 POST (no TLS), as a module in the private network would send it. */
function post(path: string, headers: Record<string, string>, body: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      const req = http.request(
        `${env.server.internalUrl}${path}`,
        { method: "POST", headers, agent: false },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => {
            text += c;
          });
          res.on("end", () => {
            const answer = { status: res.statusCode ?? 0, headers: res.headers, body: text };
            try {
              expectDocumentedAnswer("POST", path, answer);
            } catch (err) {
              reject(err);
              return;
            }
            resolve(answer);
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    },
  );
}

describe("in-network listener", () => {
  it("is off by default", async () => {
    expect(env.server.internalUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(parseConfig(baseRawConfig(), {}).server.internalListener).toBeNull();
  });

  it("relays SOAP over cleartext HTTP/1.1 with an API key", async () => {
    const res = await post(
      "/send/insi/rechercherInsAvecTraitsIdentite",
      { "x-eproxy-api-key": env.keys["lps-demo"], authorization: `Bearer ${token}`, "content-type": SOAP12 },
      insiSearchRequest("UNIQUE"),
    );
    expect(res.status).toBe(200);
    expect(res.body).toContain("<insi:CodeCR>00</insi:CodeCR>");
  });

  it("answers 401 without an API key", async () => {
    const res = await post(
      "/send/insi/rechercherInsAvecTraitsIdentite",
      { authorization: `Bearer ${token}`, "content-type": SOAP12 },
      insiSearchRequest("UNIQUE"),
    );
    expect(res.status).toBe(401);
    expect(res.headers["x-eproxy-error"]).toBe("UNAUTHENTICATED");
    expect(res.body).toContain("CallerNotAuthenticated");
  });

  it("serves the RPCs over h2c with an API key, and refuses them without one", async () => {
    const baseUrl = env.server.internalUrl as string;
    const withKey = createGrpcTransport({
      baseUrl,
      interceptors: [
        (next) => (req) => {
          req.header.set("x-eproxy-api-key", env.keys["lps-demo"]);
          return next(req);
        },
      ],
    });
    const answer = await createClient(RelayService, withKey).forwardSoap({
      sessionToken: token,
      service: "insi",
      contentType: SOAP12,
      body: new TextEncoder().encode(insiSearchRequest("UNIQUE")),
    });
    expect(answer.statusCode).toBe(200);
    const anonymous = createClient(AuthService, createGrpcTransport({ baseUrl }));
    const err = await anonymous
      .getSession({ sessionToken: token })
      .catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
  });
});

describe("bind address", () => {
  it("classifies private, public and wildcard addresses", () => {
    for (const a of [
      "127.0.0.1",
      "10.1.2.3",
      "172.20.0.5",
      "192.168.1.10",
      "::1",
      "fd00::5",
      "::ffff:10.0.0.1",
    ])
      expect(exposureOf(a), a).toBeUndefined();
    for (const a of ["0.0.0.0", "::"]) expect(exposureOf(a), a).toBe("wildcard");
    for (const a of ["203.0.113.7", "8.8.8.8", "2001:db8::1", "172.32.0.1"])
      expect(exposureOf(a), a).toBe("public");
  });

  it("warns at start when the listener is bound to a wildcard address", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const raw = baseRawConfig();
    (raw.server as Record<string, unknown>).internalListener = { listenAddress: "0.0.0.0", port: 0 };
    const config = parseConfig(raw, {});
    const deps = await createDeps(config, pino({ level: "warn" }, sink));
    const server = await startServer(deps);
    try {
      const warning = lines.map((l) => JSON.parse(l)).find((l) => /in-network listener/.test(l.msg));
      expect(warning).toMatchObject({ level: 40, exposure: "wildcard", address: "0.0.0.0" });
      expect(warning.msg).toContain("private address");
    } finally {
      await server.close();
    }
  });
});
