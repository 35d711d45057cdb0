/**
 * The ForwardSoap fast path (src/rpc/forward-soap-fast-path.ts) and the parse-failure rewrite
 * (src/rpc/strict-messages.ts) use Connect parts that Connect marks private ("does not follow
 * semantic versioning": @connectrpc/connect/protocol, /protocol-connect, /protocol-grpc) and word some
 * errors as Connect does. This test fails when any of that changes: the release, each part's shape
 * and behaviour, and each message. On failure: check the fast path against the new release
 * (test/int/forward-soap-fast-path.int.test.ts, the differential cases), then move `CONNECT_VERSION`.
 */
import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createConnectRouter,
  createHandlerContext,
  createMethodImplSpec,
} from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  invokeUnaryImplementation,
  limitSerialization,
  mergeNonProtocolHeaders,
  readAllBytes,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  errorToJsonBytes,
  parseTimeout as parseConnectTimeout,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { describe, expect, it } from "vitest";
import { ForwardSoapResponseSchema, RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import {
  CONNECT_VERSION,
  forwardSoapFastPathUsable,
  installedConnectVersion,
} from "../../src/rpc/forward-soap-fast-path.ts";

const method = RelayService.method.forwardSoap;

async function* chunks(...parts: number[]): AsyncIterable<Uint8Array> {
  for (const n of parts) yield new Uint8Array(n);
}

async function failure(p: Promise<unknown> | (() => unknown)): Promise<ConnectError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("did not fail");
}

describe("the Connect release the fast path was checked against", () => {
  it("is the one installed and the one package.json pins exactly", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { dependencies: Record<string, string> };
    expect(installedConnectVersion()).toBe(CONNECT_VERSION);
    expect(pkg.dependencies["@connectrpc/connect"]).toBe(CONNECT_VERSION);
    expect(pkg.dependencies["@connectrpc/connect-node"]).toBe(CONNECT_VERSION);
    expect(forwardSoapFastPathUsable()).toBe(true);
  });
});

describe("Connect's parts, as the fast path uses them", () => {
  it("gRPC and Connect timeouts", () => {
    expect(parseTimeout("1S", Number.MAX_SAFE_INTEGER)).toEqual({ timeoutMs: 1000 });
    expect(parseTimeout("250m", Number.MAX_SAFE_INTEGER)).toEqual({ timeoutMs: 250 });
    expect(parseTimeout(null, Number.MAX_SAFE_INTEGER)).toEqual({});
    expect(parseTimeout("soon", Number.MAX_SAFE_INTEGER).error?.code).toBe(Code.InvalidArgument);
    expect(parseConnectTimeout("1500", Number.MAX_SAFE_INTEGER)).toEqual({ timeoutMs: 1500 });
    expect(parseConnectTimeout(null, Number.MAX_SAFE_INTEGER)).toEqual({});
    expect(parseConnectTimeout("soon", Number.MAX_SAFE_INTEGER).error?.code).toBe(Code.InvalidArgument);
  });

  it("the handler context: deadline, signal, headers, abort", async () => {
    const caller = new AbortController();
    const ctx = createHandlerContext({
      service: RelayService,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      timeoutMs: 5,
      requestSignal: caller.signal,
      requestHeader: { "x-a": "1" },
      url: "https://localhost/x",
      responseHeader: { "content-type": "application/grpc+proto" },
      responseTrailer: { "grpc-status": "0" },
      contextValues: undefined,
    });
    expect(ctx.requestHeader.get("x-a")).toBe("1");
    expect(ctx.responseHeader.get("content-type")).toBe("application/grpc+proto");
    expect(ctx.responseTrailer.get("grpc-status")).toBe("0");
    expect(ctx.timeoutMs()).toBeLessThanOrEqual(5);
    await new Promise((r) => setTimeout(r, 20));
    expect(ctx.signal.aborted).toBe(true);
    expect(ConnectError.from(ctx.signal.reason).code).toBe(Code.DeadlineExceeded);
    const ctx2 = createHandlerContext({
      service: RelayService,
      method,
      protocolName: "connect",
      requestMethod: "POST",
      requestSignal: caller.signal,
      url: "https://localhost/x",
      contextValues: undefined,
    });
    ctx2.abort(new ConnectError("call ended", Code.Canceled));
    expect(ctx2.signal.aborted).toBe(true);
  });

  it("invokeUnaryImplementation runs the interceptors, outermost first, around the implementation", async () => {
    const seen: string[] = [];
    const spec = createMethodImplSpec(method, async () => {
      seen.push("impl");
      return create(ForwardSoapResponseSchema, { statusCode: 200 });
    }) as Parameters<typeof invokeUnaryImplementation>[0];
    const ctx = createHandlerContext({
      service: RelayService,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      url: "https://localhost/x",
      contextValues: undefined,
    });
    const out = await invokeUnaryImplementation(spec, ctx, create(method.input), [
      (next) => async (req) => {
        seen.push("outer");
        return next(req);
      },
      (next) => async (req) => {
        seen.push("inner");
        return next(req);
      },
    ]);
    expect(seen).toEqual(["outer", "inner", "impl"]);
    expect((out as unknown as { statusCode: number }).statusCode).toBe(200);
  });

  it("serialization lookup, answer headers and error documents", () => {
    const s = createMethodSerializationLookup(
      method,
      undefined,
      { ignoreUnknownFields: false },
      {
        readMaxBytes: 100,
        writeMaxBytes: 100,
      },
    );
    expect(typeof s.getI(true).parse).toBe("function");
    expect(typeof s.getO(false).serialize).toBe("function");
    const trailer = new Headers();
    setTrailerStatus(trailer, new ConnectError("no", Code.PermissionDenied));
    expect(trailer.get("grpc-status")).toBe(String(Code.PermissionDenied));
    expect(trailer.get("grpc-message")).toBe("no");
    const mux = trailerMux(new Headers({ a: "1" }), new Headers({ b: "2" }));
    expect([...mux.entries()]).toEqual([
      ["a", "1"],
      ["trailer-b", "2"],
    ]);
    expect(codeToHttpStatus(Code.ResourceExhausted)).toBe(429);
    expect(codeToHttpStatus(Code.InvalidArgument)).toBe(400);
    expect(Buffer.from(errorToJsonBytes(new ConnectError("bad", Code.InvalidArgument), {})).toString()).toBe(
      '{"code":"invalid_argument","message":"bad"}',
    );
    const h = new Headers();
    mergeNonProtocolHeaders(h, new Headers({ "x-eproxy-error": "E", "content-type": "x" }));
    expect(h.get("x-eproxy-error")).toBe("E");
    expect(h.get("content-type")).toBeNull();
  });

  it("a router's handlers are an array of handlers the adapter reads after `routes` (strict-messages.ts)", () => {
    const router = createConnectRouter();
    router.service(RelayService, {} as never);
    expect(Array.isArray(router.handlers)).toBe(true);
    expect(router.handlers.length).toBe(Object.keys(RelayService.method).length);
    const first = router.handlers[0];
    expect(typeof first).toBe("function");
    expect(first?.requestPath).toBe(
      `/${RelayService.typeName}/${Object.values(RelayService.method)[0]?.name}`,
    );
  });
});

describe("Connect's words, which the fast path repeats", () => {
  it("read limits (known and unknown size) and promised lengths (readAllBytes)", async () => {
    expect((await failure(readAllBytes(chunks(1), 10, "20"))).rawMessage).toBe(
      "message size 20 is larger than configured readMaxBytes 10",
    );
    expect((await failure(readAllBytes(chunks(6, 6), 10, null))).rawMessage).toBe(
      "message size is larger than configured readMaxBytes 10",
    );
    expect((await failure(readAllBytes(chunks(3), 10, "5"))).rawMessage).toBe(
      "protocol error: promised 5 bytes, received 3",
    );
    expect((await failure(readAllBytes(chunks(4, 4), 10, "5"))).rawMessage).toBe(
      "protocol error: promised 5 bytes, received 8",
    );
  });

  it("the write limit (limitSerialization)", async () => {
    const limited = limitSerialization(
      { serialize: () => new Uint8Array(20), parse: () => ({}) },
      { readMaxBytes: 10, writeMaxBytes: 10 },
    );
    const err = await failure(() => limited.serialize({}));
    expect(err.rawMessage).toBe("message size 20 is larger than configured writeMaxBytes 10");
    expect(err.code).toBe(Code.ResourceExhausted);
  });

  it("envelopes and unary messages (Connect's sources)", () => {
    const src = (f: string) =>
      readFileSync(`node_modules/@connectrpc/connect/dist/esm/protocol/${f}`, "utf8");
    expect(src("envelope.js")).toContain('"protocol error: incomplete envelope"');
    expect(src("envelope.js")).toContain('"received compressed envelope, but do not know how to decompress"');
    expect(src("invoke-implementation.js")).toContain(
      ["`protocol error: missing input message for ", "{method} method`"].join("$"),
    );
    expect(src("invoke-implementation.js")).toContain(
      ["`protocol error: received extra input message for ", "{method} method`"].join("$"),
    );
    // strict-messages.ts's PARSE_FAILURE.
    expect(src("serialization.js")).toContain("parse binary: ");
  });
});
