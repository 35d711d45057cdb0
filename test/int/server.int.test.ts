import { execFile } from "node:child_process";
import http2 from "node:http2";
import https from "node:https";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService, Channel } from "../../gen/eproxy/v1/auth_pb.ts";
import { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { expectDocumentedAnswer } from "../support/openapi.ts";
import { baseRawConfig, startTestServer, type TestServer, testPki } from "../support/server.ts";

const run = promisify(execFile);

/** Plain HTTP/1.1 request over TLS, as curl --http1.1 would send it. */
function http1(
  url: string,
  ca: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { method: init.method ?? "GET", ca, headers: init.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const answer = {
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          };
          try {
            expectDocumentedAnswer(init.method ?? "GET", new URL(url).pathname, answer);
          } catch (err) {
            reject(err);
            return;
          }
          resolve(answer);
        });
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** Plain HTTP/2 request over TLS, as curl --http2 would send it. */
function h2(
  url: string,
  ca: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const session = http2.connect(u.origin, { ca });
    session.on("error", reject);
    const stream = session.request({
      ":method": init.method ?? "GET",
      ":path": u.pathname + u.search,
      ...init.headers,
    });
    const chunks: Buffer[] = [];
    let headers: Record<string, unknown> = {};
    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      session.close();
      const answer = { status: Number(headers[":status"]), headers, body: Buffer.concat(chunks).toString() };
      try {
        expectDocumentedAnswer(init.method ?? "GET", u.pathname, answer);
      } catch (err) {
        reject(err);
        return;
      }
      resolve(answer);
    });
    stream.on("error", reject);
    stream.end(init.body);
  });
}

let t: TestServer;
let ca: string;

beforeAll(async () => {
  ca = testPki().ca;
  const raw = baseRawConfig();
  (raw.server as Record<string, unknown>).maxRequestBytes = 1024 * 1024;
  t = await startTestServer(raw);
});
afterAll(async () => {
  await t?.server.close();
});

describe("one HTTPS listener", () => {
  const transports: Array<[string, () => Transport]> = [
    ["gRPC", () => createGrpcTransport({ baseUrl: t.url, nodeOptions: { ca } })],
    [
      "gRPC-Web (HTTP/1.1)",
      () => createGrpcWebTransport({ baseUrl: t.url, httpVersion: "1.1", nodeOptions: { ca } }),
    ],
    [
      "Connect JSON (HTTP/2)",
      () => createConnectTransport({ baseUrl: t.url, httpVersion: "2", nodeOptions: { ca } }),
    ],
    [
      "Connect binary (HTTP/1.1)",
      () =>
        createConnectTransport({
          baseUrl: t.url,
          httpVersion: "1.1",
          useBinaryFormat: true,
          nodeOptions: { ca },
        }),
    ],
  ];

  for (const [name, transport] of transports) {
    it(`serves AuthService and RelayService over ${name}`, async () => {
      const auth = createClient(AuthService, transport());
      const err = await auth
        .startCiba({ clientId: "lps-demo", nationalId: "899700218896", channel: Channel.MOBILE })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      // Handlers reached (not a routing 404): without credentials the RPC layer answers a typed code.
      expect((err as ConnectError).code).toBe(Code.Unauthenticated);
      expect((err as ConnectError).metadata.get("x-eproxy-error")).toBe("UNAUTHENTICATED");
      const relay = createClient(RelayService, transport());
      const err2 = await relay.forwardSoap({ service: "insi" }).catch((e: unknown) => e);
      expect((err2 as ConnectError).code).toBe(Code.Unauthenticated);
    });
  }

  it("answers Connect JSON from a plain POST (curl-style) over HTTP/1.1 and HTTP/2", async () => {
    for (const call of [http1, h2]) {
      const res = await call(`${t.url}/eproxy.v1.AuthService/GetSession`, ca, {
        method: "POST",
        body: "{}",
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(401);
      expect(JSON.parse(res.body)).toMatchObject({
        code: "unauthenticated",
        message: "an API key or a client certificate is required",
        // eProxy's own code, readable even by a curl user (the Connect JSON shows a detail's `debug`).
        details: [
          { type: "google.rpc.ErrorInfo", debug: { reason: "UNAUTHENTICATED", domain: "eproxy.fr" } },
          { type: "google.rpc.LocalizedMessage" },
        ],
      });
      expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it("serves /healthz over HTTP/1.1 and HTTP/2; /readyz says PSC is unreachable (degraded, still ready)", async () => {
    for (const call of [http1, h2]) {
      const res = await call(`${t.url}/healthz`, ca);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toEqual({ status: "ok" });
    }
    // This server's PSC discovery URL points at a closed port.
    // A PSC outage is shared by every replica: taking them all out of rotation would stop the
    // relays that valid tokens still allow, so eProxy stays ready and says it is degraded.
    const ready = await http1(`${t.url}/readyz`, ca);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({
      status: "degraded",
      checks: { sessionStore: "ok", psc: "unavailable", traces: "ok" },
    });
  });

  it("answers unknown paths and wrong methods with problem+json", async () => {
    const nf = await h2(`${t.url}/oauth2/nothing-here`, ca);
    expect(nf.status).toBe(404);
    expect(nf.headers["content-type"]).toBe("application/problem+json");
    expect(JSON.parse(nf.body)).toMatchObject({
      type: "urn:eproxy:error:not-found",
      status: 404,
      code: "NOT_FOUND",
    });
    const na = await http1(`${t.url}/healthz`, ca, { method: "POST", body: "" });
    expect(na.status).toBe(405);
    expect(na.headers.allow).toBe("GET");
    expect(JSON.parse(na.body).code).toBe("METHOD_NOT_ALLOWED");
  });

  it("keeps a safe caller request id and replaces an unsafe one", async () => {
    const ok = await http1(`${t.url}/healthz`, ca, { headers: { "x-request-id": "abc-123" } });
    expect(ok.headers["x-request-id"]).toBe("abc-123");
    const bad = await http1(`${t.url}/healthz`, ca, { headers: { "x-request-id": "<script>" } });
    expect(bad.headers["x-request-id"]).not.toBe("<script>");
  });

  it("refuses RPC messages above the configured size limit", async () => {
    const big = "x".repeat(t.config.server.maxRequestBytes + 1);
    const relay = createClient(RelayService, createGrpcTransport({ baseUrl: t.url, nodeOptions: { ca } }));
    const err = (await relay
      .forwardSoap({ service: "insi", path: big })
      .catch((e: unknown) => e)) as ConnectError;
    expect(err.code).toBe(Code.ResourceExhausted);
  });

  it("serves gRPC reflection v1 through the generated client", async () => {
    const reflection = createClient(
      ServerReflection,
      createGrpcTransport({ baseUrl: t.url, nodeOptions: { ca } }),
    );
    async function* requests() {
      yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
      yield create(ServerReflectionRequestSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "eproxy.v1.AuthService.StartCiba" },
      });
      yield create(ServerReflectionRequestSchema, {
        messageRequest: { case: "fileByFilename", value: "nope.proto" },
      });
    }
    const answers = [];
    for await (const a of reflection.serverReflectionInfo(requests())) answers.push(a);
    expect(answers).toHaveLength(3);
    const list = answers[0]?.messageResponse;
    expect(list?.case).toBe("listServicesResponse");
    if (list?.case === "listServicesResponse") {
      expect(list.value.service.map((s) => s.name)).toEqual(
        expect.arrayContaining([
          "eproxy.v1.AuthService",
          "eproxy.v1.RelayService",
          "grpc.reflection.v1.ServerReflection",
        ]),
      );
    }
    const files = answers[1]?.messageResponse;
    expect(files?.case).toBe("fileDescriptorResponse");
    if (files?.case === "fileDescriptorResponse") {
      // auth.proto plus its imports (session.proto, google/protobuf/timestamp.proto).
      expect(files.value.fileDescriptorProto.length).toBe(3);
    }
    expect(answers[2]?.messageResponse.case).toBe("errorResponse");
  });

  it("works with `buf curl` through reflection (v1 and v1alpha), without a schema", async () => {
    const buf = "node_modules/.bin/buf";
    const pki = testPki();
    const { stdout } = await run(buf, ["curl", "--cacert", pki.caFile, "--list-methods", t.url]);
    expect(stdout).toContain("eproxy.v1.AuthService/StartCiba");
    expect(stdout).toContain("eproxy.v1.RelayService/ForwardSoap");
    const alpha = await run(buf, [
      "curl",
      "--cacert",
      pki.caFile,
      "--reflect-protocol",
      "grpc-v1alpha",
      "--list-services",
      t.url,
    ]);
    expect(alpha.stdout).toContain("eproxy.v1.AuthService");
    const call = await run(buf, [
      "curl",
      "--cacert",
      pki.caFile,
      "--protocol",
      "grpc",
      `${t.url}/eproxy.v1.AuthService/StartCiba`,
      "-d",
      '{"clientId":"lps-demo","nationalId":"899700218896","channel":"CHANNEL_MOBILE"}',
    ]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${call.stdout}${call.stderr}`).toContain("unauthenticated");
  });
});

describe("graceful shutdown", () => {
  it("lets an in-flight request finish, then refuses new connections", async () => {
    const s = await startTestServer(baseRawConfig());
    // A Connect call whose body arrives in two halves, with the shutdown in between.
    let received!: () => void;
    const headersSent = new Promise<void>((r) => {
      received = r;
    });
    const req = https.request(`${s.url}/eproxy.v1.AuthService/GetSession`, {
      ca,
      agent: false,
      method: "POST",
      headers: { "content-type": "application/json", "content-length": "2" },
    });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on("response", (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
    });
    req.write("{", () => received());
    await headersSent;
    await new Promise((r) => setTimeout(r, 200));
    const closing = s.server.close();
    await new Promise((r) => setTimeout(r, 100));
    req.end("}");
    const res = await answer;
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).code).toBe("unauthenticated");
    await closing;
    await expect(http1(`${s.url}/healthz`, ca)).rejects.toThrow(/ECONNREFUSED/);
  });
});
