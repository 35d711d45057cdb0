/**
 * Every code of the error table reaches a Connect and a gRPC client as a google.rpc.ErrorInfo
 * (reason = the code, domain eproxy.fr), through the real error interceptor on a real HTTP/2
 * server; the REST problem document carries the same code; the error code reference (docs/reference/error-codes.md) lists exactly the
 * codes eProxy has, with the statuses the boundaries use; and @eproxy/client knows every code.
 */
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthService } from "../../gen/eproxy/v1/auth_pb.ts";
import {
  ErrorInfoSchema,
  LocalizedMessageSchema,
  RetryInfoSchema,
} from "../../gen/google/rpc/error_details_pb.ts";
import { EproxyError, ERROR_CODES, ERROR_DOMAIN, type ErrorCode } from "../../src/errors.ts";
import { toProblem } from "../../src/rest/problem.ts";
import { connectCodeOf } from "../../src/rpc/connect-errors.ts";
import { createErrorInterceptor } from "../../src/rpc/interceptors.ts";

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];
let server: http2.Http2Server;
let baseUrl = "";

beforeAll(async () => {
  // A service whose GetSession fails with the code named in session_token (with a Retry-After for one).
  const handler = connectNodeAdapter({
    routes(router) {
      router.service(AuthService, {
        getSession(req) {
          const code = req.sessionToken as ErrorCode;
          throw new EproxyError(code, `failing with ${code}`, {
            ...(code === "TOO_MANY_REQUESTS" ? { retryAfterSeconds: 42 } : {}),
          });
        },
      });
    },
    interceptors: [createErrorInterceptor(pino({ level: "silent" }))],
  });
  server = http2.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

describe("ErrorInfo for every error code", () => {
  for (const protocol of ["connect", "grpc"] as const) {
    it(`a ${protocol} client reads ErrorInfo.reason for each code of the table`, async () => {
      const transport =
        protocol === "grpc"
          ? createGrpcTransport({ baseUrl })
          : createConnectTransport({ baseUrl, httpVersion: "2" });
      const client = createClient(AuthService, transport);
      for (const code of CODES) {
        const err = await client.getSession({ sessionToken: code }).then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err, code).toBeInstanceOf(ConnectError);
        const e = err as ConnectError;
        expect(e.code, code).toBe(connectCodeOf(code));
        expect(e.rawMessage, code).toBe(`failing with ${code}`);
        const [info] = e.findDetails(ErrorInfoSchema);
        expect(info?.reason, code).toBe(code);
        expect(info?.domain, code).toBe(ERROR_DOMAIN);
        expect(e.findDetails(LocalizedMessageSchema)[0]).toMatchObject({
          locale: "fr-FR",
          message: ERROR_CODES[code].fr,
        });
        if (code === "TOO_MANY_REQUESTS") {
          expect(info?.metadata).toEqual({ retryAfterSeconds: "42" });
          expect(e.findDetails(RetryInfoSchema)[0]?.retryDelay?.seconds).toBe(42n);
        } else {
          expect(info?.metadata, code).toEqual({});
        }
      }
    });
  }

  it("an unknown failure is INTERNAL, without its cause", async () => {
    const { toConnectError } = await import("../../src/rpc/connect-errors.ts");
    const e = toConnectError(new Error("mongo: connection refused to 10.0.0.3"));
    expect(e.code).toBe(Code.Internal);
    expect(e.rawMessage).toBe("internal error");
    expect(e.details).toHaveLength(2);
  });

  it("the problem document carries the same code for each", () => {
    for (const code of CODES) {
      const p = toProblem(new EproxyError(code, "x"));
      expect(p.code).toBe(code);
      expect(p.status).toBe(ERROR_CODES[code].status);
      expect(p.type).toBe(`urn:eproxy:error:${code.toLowerCase().replaceAll("_", "-")}`);
    }
  });
});

describe("the documented error table", () => {
  const section = readFileSync("docs/reference/error-codes.md", "utf8");
  const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| ([a-z_]+) \| (\d{3}) \|/gm)].map((m) => ({
    code: m[1] as string,
    connect: m[2] as string,
    status: Number(m[3]),
  }));

  it("lists every code once, with its Connect code and HTTP status", () => {
    expect(rows.map((r) => r.code).sort()).toEqual([...CODES].sort());
    for (const r of rows) {
      const code = r.code as ErrorCode;
      expect(r.status, code).toBe(ERROR_CODES[code].status);
      const connectName = Code[connectCodeOf(code)].replace(
        /[A-Z]/g,
        (c, i) => (i ? "_" : "") + c.toLowerCase(),
      );
      expect(r.connect, code).toBe(connectName);
    }
  });

  it("@eproxy/client knows every code", () => {
    const src = readFileSync("packages/client/src/errors.ts", "utf8");
    const list = /EPROXY_ERROR_CODES = \[([^\]]*)\]/.exec(src)?.[1] ?? "";
    expect([...list.matchAll(/"([A-Z_]+)"/g)].map((m) => m[1]).sort()).toEqual([...CODES].sort());
    expect(src).toContain(`EPROXY_ERROR_DOMAIN = "${ERROR_DOMAIN}"`);
  });
});
