import { Writable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import {
  childLogger,
  createLogger,
  noteAccess,
  protocolOf,
  requestContext,
  writeAccessLine,
} from "../../src/log.ts";

function capture(level = "info") {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { lines, log: createLogger(level, stream) };
}

const request = {
  method: "POST",
  url: "/send/insi?x=1",
  httpVersion: "2.0",
  contentType: "application/soap+xml",
  contentLength: "2048",
};

describe("logger", () => {
  it("redacts credentials at their exact paths: headers and foreign errors", () => {
    const { lines, log } = capture();
    log.info({
      headers: {
        authorization: "Bearer secret-1",
        cookie: "proxy_session_id=secret-2",
        "x-eproxy-session": "secret-3",
        "x-eproxy-api-key": "secret-4",
      },
    });
    log.error({
      err: { message: "boom", response: { body: "secret-5" }, cause: { headers: { a: "secret-6" } } },
    });
    const out = lines.join("");
    for (let i = 1; i <= 6; i++) expect(out).not.toContain(`secret-${i}`);
    expect(out).toContain("[redacted]");
    expect(out).toContain("boom");
  });

  it("shows error codes (a field named code is not a secret)", () => {
    const { lines, log } = capture();
    log.warn({ code: "ECONNREFUSED" }, "Redis unavailable");
    expect(JSON.parse(lines[0] as string).code).toBe("ECONNREFUSED");
  });

  it("puts the request id on every line logged during a request", () => {
    const { lines, log } = capture();
    requestContext.run({ requestId: "req-42", access: {} }, () => {
      log.info("one");
      log.warn({ a: 1 }, "two");
    });
    log.info("outside");
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed[0].requestId).toBe("req-42");
    expect(parsed[1].requestId).toBe("req-42");
    expect(parsed[2].requestId).toBeUndefined();
  });
});

describe("access line", () => {
  it("carries what the layers noted during the request, once, at info", () => {
    const { lines, log } = capture();
    const ctx = { requestId: "req-7", access: {} };
    requestContext.run(ctx, () => {
      noteAccess({ route: "/send/:service/*", clientId: "lps-1" });
      noteAccess({ teleservice: "insi", upstreamStatus: 200, bytesIn: 2048, bytesOut: 5120, code: "OK" });
    });
    // Written when the response closes, outside the request's async context: named by construction.
    writeAccessLine(log, ctx, request, 200, true, 1.234, undefined);
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0] as string);
    expect(line).toMatchObject({
      level: "info",
      msg: "request",
      requestId: "req-7",
      clientId: "lps-1",
      route: "/send/:service/*",
      protocol: "rest",
      code: "OK",
      status: 200,
      completed: true,
      teleservice: "insi",
      upstreamStatus: 200,
      bytesIn: 2048,
      bytesOut: 5120,
      durationMs: 1.2,
    });
  });

  it("logs a client that hung up at info, without a stack", () => {
    const { lines, log } = capture();
    writeAccessLine(log, { requestId: "r", access: {} }, request, 200, false, 3, undefined);
    const line = JSON.parse(lines[0] as string);
    expect(line.level).toBe("info");
    expect(line.code).toBe("CLIENT_CLOSED");
    expect(line.completed).toBe(false);
    expect(lines[0]).not.toContain("stack");
  });

  it("names the path without its query when no route matched, and is silent above info", () => {
    const { lines, log } = capture();
    writeAccessLine(
      log,
      { requestId: "r", access: {} },
      { ...request, url: "/nope?secret=1" },
      404,
      true,
      1,
      "12",
    );
    const line = JSON.parse(lines[0] as string);
    expect(line.route).toBe("/nope");
    expect(line.bytesOut).toBe(12);
    const quiet = capture("warn");
    writeAccessLine(quiet.log, { requestId: "r", access: {} }, request, 200, true, 1, undefined);
    expect(quiet.lines).toHaveLength(0);
  });

  it("is built by construction byte for byte as pino would write it (escapes, null for NaN, children)", () => {
    const { lines, log } = capture();
    const child = childLogger(log, { worker: 3 });
    // A child made by pino alone: written through pino (the generic path), the same line.
    const plain = log.child({ worker: 4 });
    const ctx = {
      requestId: 'r-"1',
      access: {
        clientId: 'lps "é" \\ \u0001',
        route: "/send/:service/*",
        soapAction: "urn:a\nb",
        upstreamStatus: 502,
      },
    };
    const odd = { ...request, contentLength: "abc", method: "PO\tST" };
    for (const l of [log, child, plain]) {
      writeAccessLine(l, ctx, odd, 502, true, 12.345, undefined);
      // The reference: pino's own line for the same fields.
      l.info(
        {
          requestId: ctx.requestId,
          clientId: ctx.access.clientId,
          method: odd.method,
          route: ctx.access.route,
          protocol: "rest",
          status: 502,
          completed: true,
          httpVersion: "2.0",
          durationMs: 12.3,
          bytesIn: Number.NaN,
          soapAction: ctx.access.soapAction,
          upstreamStatus: 502,
        },
        "request",
      );
    }
    const untimed = lines.map((l) => l.replace(/"time":"[^"]+"/, '"time":"T"'));
    expect(untimed).toHaveLength(6);
    expect(untimed[0]).toBe(untimed[1]);
    expect(untimed[2]).toBe(untimed[3]);
    expect(untimed[4]).toBe(untimed[5]);
    expect(untimed[2]).toContain('"worker":3');
    expect(JSON.parse(untimed[2] as string)).toMatchObject({
      worker: 3,
      bytesIn: null,
      clientId: ctx.access.clientId,
    });
  });

  it("is written by construction (not through pino's info) for loggers of createLogger and childLogger", () => {
    const { lines, log } = capture();
    for (const l of [log, childLogger(log, { worker: 1 })]) {
      const info = vi.spyOn(l, "info");
      writeAccessLine(l, { requestId: "r", access: {} }, request, 200, true, 1, undefined);
      expect(info).not.toHaveBeenCalled();
    }
    expect(lines).toHaveLength(2);
  });

  it("tells the protocol from the content type and the path", () => {
    expect(protocolOf("application/grpc+proto", "/eproxy.v1.RelayService/ForwardSoap")).toBe("grpc");
    expect(protocolOf("application/grpc-web+proto", "/eproxy.v1.RelayService/ForwardSoap")).toBe("grpc-web");
    expect(protocolOf("application/json", "/eproxy.v1.AuthService/StartCiba")).toBe("connect");
    expect(protocolOf("application/json", "/oauth2/ciba")).toBe("rest");
  });
});

describe("lines", () => {
  it("do not carry fields of earlier lines", () => {
    const { lines, log } = capture();
    log.info({ port: 1 }, "one");
    log.info("two");
    expect(JSON.parse(lines[1] as string).port).toBeUndefined();
  });
});
