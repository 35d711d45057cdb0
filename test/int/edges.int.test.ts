import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import { Code, type ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import {
  ACTIONS,
  insiSearchRequest,
  iti41RootPart,
  mtomContentType,
  mtomParts,
} from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, DOCTOR, startAuthEnv } from "../support/auth-env.ts";

const run = promisify(execFile);
const SOAP12 = `application/soap+xml; charset=utf-8; action="${ACTIONS.insiSearch}"`;
let env: AuthEnv;
let token: string;
let dir: string;

beforeAll(async () => {
  env = await startAuthEnv();
  token = await cibaLogin(env.auth(), DOCTOR);
  dir = mkdtempSync(path.join(tmpdir(), "eproxy-edges-"));
  writeFileSync(path.join(dir, "ca.pem"), env.ca);
});
afterAll(async () => {
  await env?.close();
});

const withKey: Interceptor = (next) => (req) => {
  req.header.set("x-eproxy-api-key", env.keys["lps-demo"]);
  return next(req);
};

/** One HTTP/2 request with raw headers; resolves with the status and the response headers. */
function h2(
  headers: Record<string, string>,
): Promise<{ status: number; headers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(env.url, { ca: env.ca });
    session.on("error", reject);
    const req = session.request({ ":method": "GET", ":path": "/healthz", ...headers });
    req.on("response", (h) => {
      req.resume();
      req.on("end", () => {
        session.close();
        resolve({ status: Number(h[":status"]), headers: h });
      });
    });
    req.on("error", (e) => {
      session.close();
      reject(e);
    });
    req.end();
  });
}

describe("HTTP edges", () => {
  it("Expect: 100-continue over HTTP/1.1: curl uploads a 20 MiB MTOM byte-exact", async () => {
    const boundary = `MIMEBoundary_${randomBytes(12).toString("hex")}`;
    const frame = mtomParts(boundary, iti41RootPart("doc1@eproxy"));
    const doc = randomBytes(20 * 1024 * 1024);
    const body = Buffer.concat([
      Buffer.from(frame.head + frame.attachmentHead("doc1@eproxy")),
      doc,
      Buffer.from(frame.tail),
    ]);
    const file = path.join(dir, "upload.bin");
    writeFileSync(file, body);
    const { stdout } = await run(
      "curl",
      [
        "-sS",
        "--http1.1",
        "--cacert",
        path.join(dir, "ca.pem"),
        "-H",
        `x-eproxy-api-key: ${env.keys["lps-demo"]}`,
        "-H",
        `authorization: Bearer ${token}`,
        "-H",
        `content-type: ${mtomContentType(boundary, ACTIONS.iti41)}`,
        // curl sends it by itself above 1 MiB; said explicitly so that the test does not depend on it.
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        `@${file}`,
        "-w",
        "\n%{http_code} %{http_version}",
        `${env.url}/send/dmp/repository`,
      ],
      { maxBuffer: 4 * 1024 * 1024 },
    );
    const [answer, status] = [
      stdout.slice(0, stdout.lastIndexOf("\n")),
      stdout.slice(stdout.lastIndexOf("\n") + 1),
    ];
    expect(status).toBe("200 1.1");
    expect(answer).toContain(
      `<ep:BodyHash bytes="${body.length}">${createHash("sha256").update(body).digest("hex")}</ep:BodyHash>`,
    );
    expect(answer).toContain(
      `<ep:PartHash bytes="${doc.length}">${createHash("sha256").update(doc).digest("hex")}</ep:PartHash>`,
    );
    expect(env.tele.stats.lastHeaders.expect).toBeUndefined();
  }, 60_000);

  it("answers eProxy's x-request-id on /send; the teleservice's is kept as x-upstream-request-id", async () => {
    const res = await new Promise<{ headers: Record<string, unknown>; status: number }>((resolve, reject) => {
      const req = https.request(
        `${env.url}/send/insi`,
        {
          method: "POST",
          ca: env.ca,
          agent: false,
          headers: {
            "x-eproxy-api-key": env.keys["lps-demo"],
            authorization: `Bearer ${token}`,
            "content-type": SOAP12,
            "x-request-id": "caller-req-1",
          },
        },
        (r) => {
          r.resume();
          r.on("end", () => resolve({ headers: r.headers, status: r.statusCode ?? 0 }));
        },
      );
      req.on("error", reject);
      req.end(insiSearchRequest("UNIQUE"));
    });
    expect(res.status).toBe(200);
    expect(res.headers["x-request-id"]).toBe("caller-req-1");
    // The simulator answers its own x-request-id (a real teleservice may too).
    expect(res.headers["x-upstream-request-id"]).toBeDefined();
    expect(res.headers["x-upstream-request-id"]).not.toBe("caller-req-1");
  });

  it("refuses NUL and other control characters in /send paths before any upstream call", async () => {
    const before = env.tele.stats.requests;
    for (const p of [
      "/send/insi/a%00b",
      "/send/insi/a%0d%0aX-Injected:1",
      "/send/insi/%1f",
      "/send/insi/x%7F",
    ]) {
      const res = await env.http("POST", p, {
        headers: {
          "x-eproxy-api-key": env.keys["lps-demo"],
          authorization: `Bearer ${token}`,
          "content-type": SOAP12,
        },
        body: insiSearchRequest("UNIQUE"),
      });
      expect(res.status, p).toBe(400);
    }
    expect(env.tele.stats.requests).toBe(before);
  });

  it("ForwardSoap: a header name with a space or a value with CRLF is invalid_argument", async () => {
    const relay = env.grpc(RelayService);
    for (const h of [
      { name: "x bad", value: "1" },
      { name: "x-ok", value: "a\r\nx-injected: 1" },
      { name: "x-nul", value: "a\u0000b" },
    ]) {
      const e = (await relay
        .forwardSoap({
          sessionToken: token,
          service: "insi",
          contentType: SOAP12,
          body: Buffer.from(insiSearchRequest("UNIQUE")),
          headers: [h],
        })
        .catch((x: unknown) => x)) as ConnectError;
      expect(e.code, JSON.stringify(h)).toBe(Code.InvalidArgument);
    }
  });

  it("malformed protobuf is invalid_argument (gRPC and Connect binary), not internal", async () => {
    for (const [contentType, body] of [
      ["application/grpc", Buffer.concat([Buffer.from([0, 0, 0, 0, 3]), Buffer.from([0x0a, 0xff, 0xff])])],
      ["application/proto", Buffer.from([0x0a, 0xff, 0xff])],
    ] as const) {
      const res = await new Promise<{
        status: number;
        headers: http2.IncomingHttpHeaders;
        trailers: http2.IncomingHttpHeaders;
        body: string;
      }>((resolve, reject) => {
        const session = http2.connect(env.url, { ca: env.ca });
        session.on("error", reject);
        const req = session.request({
          ":method": "POST",
          ":path": "/eproxy.v1.RelayService/ForwardSoap",
          "content-type": contentType,
          "x-eproxy-api-key": env.keys["lps-demo"],
          ...(contentType === "application/grpc" ? { te: "trailers" } : {}),
        });
        let headers: http2.IncomingHttpHeaders = {};
        let trailers: http2.IncomingHttpHeaders = {};
        let text = "";
        req.on("response", (h) => {
          headers = h;
        });
        req.on("trailers", (t) => {
          trailers = t;
        });
        req.on("data", (d: Buffer) => {
          text += d;
        });
        req.on("end", () => {
          session.close();
          resolve({ status: Number(headers[":status"]), headers, trailers, body: text });
        });
        req.end(body);
      });
      if (contentType === "application/grpc") {
        expect(String(res.trailers["grpc-status"] ?? res.headers["grpc-status"])).toBe(
          String(Code.InvalidArgument),
        );
      } else {
        expect(res.status).toBe(400);
        expect(JSON.parse(res.body).code).toBe("invalid_argument");
      }
    }
  });

  it("Connect JSON refuses an unknown enum value (CHANNEL_PIGEON) instead of pushing it to PSC", async () => {
    const before = env.psc.stats.cibaRequests;
    const res = await env.http("POST", "/eproxy.v1.AuthService/StartCiba", {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"], "content-type": "application/json" },
      body: { nationalId: "899700366240", channel: "CHANNEL_PIGEON" },
    });
    expect(res.status).toBe(400);
    expect(res.json().code).toBe("invalid_argument");
    expect(env.psc.stats.cibaRequests).toBe(before);
    // A numeric value outside the enum is refused too (gRPC binary would carry it as an open enum).
    const connect = createClient(
      (await import("../../gen/eproxy/v1/auth_pb.ts")).AuthService,
      createConnectTransport({
        baseUrl: env.url,
        httpVersion: "2",
        nodeOptions: { ca: env.ca },
        interceptors: [withKey],
      }),
    );
    const e = (await connect
      .startCiba({ nationalId: "899700366240", channel: 42 as never })
      .catch((x: unknown) => x)) as ConnectError;
    expect(e.code).toBe(Code.InvalidArgument);
    expect(env.psc.stats.cibaRequests).toBe(before);
  });

  it("enforces server.maxHeaderBytes on HTTP/2 (431) as on HTTP/1.1", async () => {
    const big = "x".repeat(20 * 1024);
    expect((await h2({ "x-big": big })).status).toBe(431);
    expect((await h2({ "x-small": "y" })).status).toBe(200);
    const http1 = await env.http("GET", "/healthz", { headers: { "x-big": big } }).catch((e: unknown) => e);
    expect((http1 as { status?: number }).status ?? 431).toBe(431);
  });

  it("TLS 1.2 offers only ECDHE with AEAD suites; TLS 1.3 is unchanged", async () => {
    const port = Number(new URL(env.url).port);
    const handshake = (opts: tls.ConnectionOptions) =>
      new Promise<string | undefined>((resolve) => {
        const s = tls.connect({ host: "localhost", port, ca: env.ca, ...opts }, () => {
          const name = s.getCipher().name;
          s.end();
          resolve(name);
        });
        s.on("error", () => resolve(undefined));
      });
    const accepted: string[] = [];
    for (const c of tls.getCiphers()) {
      const got = await handshake({ maxVersion: "TLSv1.2", minVersion: "TLSv1.2", ciphers: c.toUpperCase() });
      if (got) accepted.push(got);
    }
    expect(accepted.length).toBeGreaterThan(0);
    for (const c of accepted) expect(c).toMatch(/^ECDHE-(RSA|ECDSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/);
    expect(await handshake({ maxVersion: "TLSv1.2", ciphers: "AES128-SHA" })).toBeUndefined();
    expect(await handshake({ maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-SHA" })).toBeUndefined();
    expect(await handshake({ minVersion: "TLSv1.3" })).toMatch(/^TLS_/);
  }, 60_000);
});
