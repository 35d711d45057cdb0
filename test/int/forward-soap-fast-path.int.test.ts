/**
 * The ForwardSoap fast path (src/rpc/forward-soap-fast-path.ts) gives the answer Connect gives:
 * the same request is sent to one server as `application/grpc` (fast path) and as
 * `Application/grpc` (a content type Connect matches case-insensitively and the fast path does not,
 * so Connect serves it), and the two answers are compared — status, headers, message bytes and
 * trailers (status, message, error details, error metadata) — for a relayed call and for each way a
 * call can fail before, inside and after the relay. The same for Connect unary calls
 * (`application/proto` and `application/json`, over HTTP/2 and HTTP/1.1).
 */
import http2 from "node:http2";
import https from "node:https";
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ForwardSoapRequestSchema, ForwardSoapResponseSchema } from "../../gen/eproxy/v1/relay_pb.ts";
import { createForwardSoapFastPath, FORWARD_SOAP_PATH } from "../../src/rpc/forward-soap-fast-path.ts";
import { insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, DOCTOR, NURSE, startAuthEnv } from "../support/auth-env.ts";

const SOAP12 = "application/soap+xml; charset=utf-8";
const MAX = 64 * 1024;
let env: AuthEnv;
let token: string;

beforeAll(async () => {
  env = await startAuthEnv({ server: { maxRequestBytes: MAX } });
  token = await cibaLogin(env.auth("lps-demo"), DOCTOR);
});
afterAll(async () => {
  await env?.close();
});

interface RawAnswer {
  status: number;
  headers: Record<string, unknown>;
  data: Buffer;
  trailers: Record<string, unknown>;
}

/** A ForwardSoap request stream on its own HTTP/2 connection. */
function open(contentType: string, headers: Record<string, string>, onError: (err: Error) => void) {
  const session = http2.connect(env.url, { ca: env.ca });
  session.on("error", onError);
  const req = session.request({
    ":method": "POST",
    ":path": FORWARD_SOAP_PATH,
    "content-type": contentType,
    te: "trailers",
    ...headers,
  });
  return { session, req };
}

/** One gRPC call with a raw body (envelopes included), over its own HTTP/2 connection. */
function call(contentType: string, body: Buffer, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const { session, req } = open(contentType, headers, reject);
    let status = 0;
    let head: Record<string, unknown> = {};
    let trailers: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    req.on("response", (h) => {
      status = Number(h[":status"]);
      head = { ...h };
    });
    req.on("trailers", (t) => {
      trailers = { ...t };
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      // Per call: the request id and the date.
      delete head["x-request-id"];
      delete head.date;
      delete head[":status"];
      resolve({ status, headers: head, data: Buffer.concat(chunks), trailers });
    });
    req.on("error", reject);
    req.end(body);
  });
}

function envelope(message: Uint8Array, flags = 0): Buffer {
  const b = Buffer.alloc(5 + message.length);
  b[0] = flags;
  b.writeUInt32BE(message.length, 1);
  b.set(message, 5);
  return b;
}

function request(fields: Partial<{ sessionToken: string; service: string; body: Uint8Array }> = {}) {
  return toBinary(
    ForwardSoapRequestSchema,
    create(ForwardSoapRequestSchema, {
      sessionToken: token,
      service: "insi",
      contentType: SOAP12,
      body: Buffer.from(insiSearchRequest("UNIQUE")),
      ...fields,
    }),
  );
}

/** The same call through the fast path and through Connect; both answers. */
async function both(body: Buffer, headers: Record<string, string> = {}) {
  const fast = await call("application/grpc", body, headers);
  const connect = await call("Application/grpc", body, headers);
  return { fast, connect };
}

const key = () => ({ "x-eproxy-api-key": env.keys["lps-demo"] });

describe("gRPC ForwardSoap fast path", () => {
  it("takes plain gRPC and Connect unary ForwardSoap calls only (everything else stays with Connect)", () => {
    const fast = createForwardSoapFastPath({
      impl: { forwardSoap: async () => ({}) } as never,
      interceptors: [],
      maxBytes: MAX,
      contextValues: () => ({}) as never,
    });
    const req = (over: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
      ({
        httpVersionMajor: 2,
        method: "POST",
        url: FORWARD_SOAP_PATH,
        headers: { "content-type": "application/grpc", ...headers },
        ...over,
      }) as never;
    // Refused before anything is read or written: a bare object is enough for these.
    expect(fast(req({ httpVersionMajor: 1 }), {} as never)).toBe(false);
    expect(fast(req({ method: "GET" }), {} as never)).toBe(false);
    expect(fast(req({ url: "/eproxy.v1.RelayService/Other" }), {} as never)).toBe(false);
    for (const ct of [
      "application/grpc-web",
      "application/grpc+json",
      "Application/grpc",
      "application/connect+proto",
      "application/connect+json",
      "Application/proto",
      "text/xml",
    ]) {
      expect(fast(req({}, { "content-type": ct }), {} as never)).toBe(false);
    }
    expect(fast(req({}, { "grpc-encoding": "gzip" }), {} as never)).toBe(false);
    // An answer Connect would compress: Connect negotiates.
    for (const accept of ["gzip", "identity, gzip", "br", "GZIP;q=0.5"]) {
      expect(fast(req({}, { "grpc-accept-encoding": accept }), {} as never)).toBe(false);
      expect(
        fast(req({}, { "content-type": "application/proto", "accept-encoding": accept }), {} as never),
      ).toBe(false);
    }
    expect(
      fast(req({}, { "content-type": "application/proto", "content-encoding": "gzip" }), {} as never),
    ).toBe(false);
  });

  it("relays a call: the same message as Connect, trailers grpc-status 0", async () => {
    const { fast, connect } = await both(envelope(request()), key());
    expect(fast.status).toBe(200);
    expect(fast.trailers["grpc-status"]).toBe("0");
    expect(fast.headers).toEqual(connect.headers);
    expect(fast.trailers).toEqual(connect.trailers);
    const a = fromBinary(ForwardSoapResponseSchema, fast.data.subarray(5));
    const b = fromBinary(ForwardSoapResponseSchema, connect.data.subarray(5));
    expect(a.statusCode).toBe(200);
    expect(Buffer.from(a.body).toString()).toContain("<insi:CodeCR>00</insi:CodeCR>");
    expect(a.statusCode).toBe(b.statusCode);
    expect(a.contentType).toBe(b.contentType);
    // The simulator's answers carry a fresh MessageID each.
    const stable = (body: Uint8Array) =>
      Buffer.from(body)
        .toString()
        .replace(/urn:uuid:[\w-]+/g, "urn:uuid:x");
    expect(stable(a.body)).toBe(stable(b.body));
    expect(a.headers.map((h) => h.name)).toEqual(b.headers.map((h) => h.name));
    expect(fast.data.readUInt32BE(1)).toBe(fast.data.length - 5);
  });

  it("steps aside when the caller accepts gzip: Connect negotiates and answers gzip, both ways the same", async () => {
    const { fast, connect } = await both(envelope(request()), { ...key(), "grpc-accept-encoding": "gzip" });
    expect(fast.headers["grpc-encoding"]).toBe("gzip");
    expect(fast.headers).toEqual(connect.headers);
    expect(fast.trailers).toEqual(connect.trailers);
    const decode = (d: Buffer) => {
      const payload = d.subarray(5);
      return fromBinary(ForwardSoapResponseSchema, d[0] === 1 ? gunzipSync(payload) : payload);
    };
    expect(fast.data[0]).toBe(connect.data[0]);
    expect(decode(fast.data).body.length).toBe(decode(connect.data).body.length);
  });

  it.each([
    ["no credentials (UNAUTHENTICATED, details and x-eproxy-error)", () => envelope(request()), {}],
    ["an unknown session (SESSION_INVALID)", () => envelope(request({ sessionToken: "eps_nope" })), "key"],
    ["a service the client may not use", () => envelope(request({ service: "nope" })), "key"],
    ["a message that does not parse", () => envelope(Buffer.from([0xff, 0xff, 0xff, 0x0f])), "key"],
    ["no message at all", () => Buffer.alloc(0), "key"],
    ["two messages", () => Buffer.concat([envelope(request()), envelope(request())]), "key"],
    ["a compressed message without grpc-encoding", () => envelope(request(), 1), "key"],
    ["a message over server.maxRequestBytes", () => envelope(request({ body: Buffer.alloc(MAX) })), "key"],
    ["a bad grpc-timeout", () => envelope(request()), "timeout"],
  ] as const)("fails like Connect on %s", async (_name, body, creds) => {
    const headers = creds === "key" ? key() : creds === "timeout" ? { ...key(), "grpc-timeout": "soon" } : {};
    const { fast, connect } = await both(body(), headers);
    expect(fast.trailers["grpc-status"]).not.toBe("0");
    expect(fast.status).toBe(connect.status);
    expect(fast.headers).toEqual(connect.headers);
    expect(fast.data).toEqual(connect.data);
    expect(fast.trailers).toEqual(connect.trailers);
  });

  it("stops the relay when the caller resets the stream, traces it ABORTED, and keeps serving", async () => {
    env.tele.faults.slowHeadersMs = 2_000;
    const since = Date.now();
    try {
      for (const contentType of ["application/grpc", "Application/grpc"]) {
        await new Promise<void>((resolve, reject) => {
          const { session, req } = open(contentType, key(), reject);
          req.on("error", () => {});
          req.end(envelope(request()));
          setTimeout(() => {
            req.close(http2.constants.NGHTTP2_CANCEL);
            session.close();
            resolve();
          }, 300);
        });
      }
      const sends = async () => {
        await env.deps.traces.flush();
        const all = await env.deps.traceStore.query({ start: since, end: Date.now() + 1_000, limit: 100 });
        return all.filter((t) => t.type === "SEND").map((t) => t.outcome);
      };
      // Both the fast path and Connect end the relayed call ABORTED (the upstream call is stopped).
      await expect
        .poll(async () => (await sends()).length, { timeout: 20_000, interval: 100 })
        .toBeGreaterThanOrEqual(2);
      expect(await sends()).toEqual(["ABORTED", "ABORTED"]);
    } finally {
      env.tele.faults.slowHeadersMs = 0;
    }
    const after = await call("application/grpc", envelope(request()), key());
    expect(after.trailers["grpc-status"]).toBe("0");
  });

  it("answers a relay refused by the teleservice's answer like Connect (the nurse may not use dmp)", async () => {
    const nurse = await cibaLogin(env.auth("lps-demo"), NURSE);
    const { fast, connect } = await both(envelope(request({ sessionToken: nurse, service: "dmp" })), key());
    expect(fast.trailers).toEqual(connect.trailers);
    expect(fast.data).toEqual(connect.data);
  });
  describe("Connect unary", () => {
    /** One Connect unary call over HTTP/2 (or HTTP/1.1), raw body. */
    function connectCall(
      contentType: string,
      body: Buffer | string,
      headers: Record<string, string>,
      http: "2" | "1.1",
    ): Promise<{ status: number; headers: Record<string, unknown>; data: Buffer }> {
      const done = (status: number, h: Record<string, unknown>, chunks: Buffer[]) => {
        const head = { ...h };
        for (const k of ["x-request-id", "date", ":status", "connection", "keep-alive"]) delete head[k];
        return { status, headers: head, data: Buffer.concat(chunks) };
      };
      if (http === "1.1") {
        return new Promise((resolve, reject) => {
          const req = https.request(
            `${env.url}${FORWARD_SOAP_PATH}`,
            {
              method: "POST",
              ca: env.ca,
              agent: false,
              headers: { "content-type": contentType, ...headers },
            },
            (res) => {
              const chunks: Buffer[] = [];
              res.on("data", (c: Buffer) => chunks.push(c));
              res.on("end", () => resolve(done(res.statusCode ?? 0, res.headers, chunks)));
            },
          );
          req.on("error", reject);
          req.end(body);
        });
      }
      return new Promise((resolve, reject) => {
        const { session, req } = open(contentType, headers, reject);
        let status = 0;
        let head: Record<string, unknown> = {};
        const chunks: Buffer[] = [];
        req.on("response", (h) => {
          status = Number(h[":status"]);
          head = h;
        });
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          session.close();
          resolve(done(status, head, chunks));
        });
        req.on("error", reject);
        req.end(body);
      });
    }

    const json = (over: Record<string, unknown> = {}) =>
      JSON.stringify({
        ...JSON.parse(
          toJsonString(ForwardSoapRequestSchema, fromBinary(ForwardSoapRequestSchema, request())),
        ),
        ...over,
      });
    const upper = (ct: string) => ct.replace("application", "Application");

    it.each(["2", "1.1"] as const)(
      "relays a call like Connect, binary and JSON, over HTTP/%s",
      async (http) => {
        for (const [ct, body] of [
          ["application/proto", Buffer.from(request())],
          ["application/json", json()],
        ] as const) {
          const fast = await connectCall(ct, body, key(), http);
          const connect = await connectCall(upper(ct), body, key(), http);
          expect(fast.status).toBe(200);
          expect(fast.headers).toEqual(connect.headers);
          const decode = (d: Buffer) =>
            ct === "application/proto"
              ? fromBinary(ForwardSoapResponseSchema, d)
              : fromJsonString(ForwardSoapResponseSchema, d.toString());
          const a = decode(fast.data);
          const b = decode(connect.data);
          const stable = (x: Uint8Array) =>
            Buffer.from(x)
              .toString()
              .replace(/urn:uuid:[\w-]+/g, "urn:uuid:x");
          expect(a.statusCode).toBe(200);
          expect(stable(a.body)).toBe(stable(b.body));
          // The JSON answer (body base64 by Node: forward-soap-json.ts) is protobuf-es's, byte for byte.
          if (ct === "application/json") {
            expect(fast.data.toString()).toBe(toJsonString(ForwardSoapResponseSchema, a));
          }
        }
      },
    );

    const failures: Array<[string, string, () => Buffer | string, "none" | "key" | "timeout"]> = [
      ["no credentials", "application/proto", () => Buffer.from(request()), "none"],
      [
        "an unknown session",
        "application/proto",
        () => Buffer.from(request({ sessionToken: "eps_nope" })),
        "key",
      ],
      [
        "a message that does not parse",
        "application/proto",
        () => Buffer.from([0xff, 0xff, 0xff, 0x0f]),
        "key",
      ],
      ["JSON that does not parse", "application/json", () => "{not json", "key"],
      ["an unknown JSON field", "application/json", () => json({ color: "blue" }), "key"],
      ["a JSON field of the wrong type", "application/json", () => json({ service: 5 }), "key"],
      ["a forbidden service, in JSON", "application/json", () => json({ service: "nope" }), "key"],
      [
        "a message over server.maxRequestBytes",
        "application/proto",
        () => Buffer.from(request({ body: Buffer.alloc(MAX) })),
        "key",
      ],
      ["a bad connect-timeout-ms", "application/proto", () => Buffer.from(request()), "timeout"],
    ];
    it("refuses like Connect a message over the limit that HTTP/2 announces in content-length", async () => {
      const body = Buffer.from(request({ body: Buffer.alloc(MAX) }));
      const headers = { ...key(), "content-length": String(body.length) };
      const fast = await connectCall("application/proto", body, headers, "2");
      const connect = await connectCall(upper("application/proto"), body, headers, "2");
      expect(fast.status).toBe(connect.status);
      expect(fast.headers).toEqual(connect.headers);
      expect(JSON.parse(fast.data.toString())).toEqual(JSON.parse(connect.data.toString()));
      expect(JSON.parse(fast.data.toString()).message).toBe(
        `message size ${body.length} is larger than configured readMaxBytes ${MAX}`,
      );
    });

    it.each(failures)("fails like Connect on %s", async (_name, ct, body, creds) => {
      const headers =
        creds === "key" ? key() : creds === "timeout" ? { ...key(), "connect-timeout-ms": "soon" } : {};
      for (const http of ["2", "1.1"] as const) {
        const fast = await connectCall(ct, body(), headers, http);
        const connect = await connectCall(upper(ct), body(), headers, http);
        expect(fast.status).not.toBe(200);
        expect(fast.status).toBe(connect.status);
        expect(fast.headers).toEqual(connect.headers);
        expect(JSON.parse(fast.data.toString())).toEqual(JSON.parse(connect.data.toString()));
      }
    });

    /**
     * Random calls, each sent to the fast path and to Connect (the content type in another case):
     * messages (valid, random, unparseable, over the limit), metadata, deadlines, credentials, and
     * gzip either way (a compressed request, an answer the caller would take compressed). The
     * answers must be the same: status, headers, trailers, and the message (the simulator's fresh
     * MessageID aside). The seed is in the test's name; EPROXY_DIFF_SEED replays one.
     */
    const seed = Number(process.env.EPROXY_DIFF_SEED ?? Date.now() % 1_000_000);
    it(`random calls answer as Connect answers them (seed ${seed})`, { timeout: 120_000 }, async () => {
      let state = seed >>> 0;
      const rnd = () => {
        // mulberry32
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
      const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
      const word = () => bytes(1 + Math.floor(rnd() * 12)).toString("base64url");
      const stable = (x: Uint8Array) =>
        Buffer.from(x)
          .toString()
          .replace(/urn:uuid:[\w-]+/g, "urn:uuid:x");
      for (let i = 0; i < 40; i++) {
        const protocol = pick(["grpc", "proto", "json"] as const);
        const http = protocol === "grpc" ? "2" : pick(["2", "1.1"] as const);
        const fields = {
          sessionToken: pick([token, token, token, `eps_${word()}`, ""]),
          service: pick(["insi", "insi", "insi", "dmp", word().toLowerCase()]),
          body: pick([
            () => Buffer.from(insiSearchRequest(word())),
            () => Buffer.from(insiSearchRequest(word())),
            () => bytes(Math.floor(rnd() * 3000)),
            () => Buffer.alloc(0),
            () => Buffer.alloc(MAX),
          ])(),
        };
        let message: Uint8Array = request(fields);
        const garbage = rnd() < 0.1;
        if (garbage) message = bytes(1 + Math.floor(rnd() * 64));
        const headers: Record<string, string> = rnd() < 0.9 ? key() : {};
        if (rnd() < 0.5) headers["x-correlation-id"] = pick([word(), "not safe!", `c-${word()}`]);
        if (rnd() < 0.5)
          headers[
            `x-meta-${word()
              .toLowerCase()
              .replace(/[^a-z0-9]/g, "")}`
          ] = word();
        if (rnd() < 0.3) headers.soapaction = `"urn:${word()}"`;
        const deadline = pick([undefined, undefined, "long", "bad"] as const);
        if (deadline) {
          const value =
            protocol === "grpc"
              ? deadline === "long"
                ? pick(["30S", "2M", "1H"])
                : pick(["soon", "1", "99999999999S"])
              : deadline === "long"
                ? pick(["30000", "120000"])
                : pick(["soon", "-1", "1.5"]);
          headers[protocol === "grpc" ? "grpc-timeout" : "connect-timeout-ms"] = value;
        }
        const gzip = pick(["none", "none", "accept-gzip", "accept-br", "accept-identity", "request-gzip"]);
        if (gzip.startsWith("accept-")) {
          headers[protocol === "grpc" ? "grpc-accept-encoding" : "accept-encoding"] = gzip.slice(7);
        }
        const name = `case ${i}: ${protocol} HTTP/${http} ${JSON.stringify({ ...headers, "x-eproxy-api-key": undefined })} ${gzip}`;
        if (protocol === "grpc") {
          let body = envelope(message);
          if (gzip === "request-gzip") {
            headers["grpc-encoding"] = "gzip";
            body = envelope(gzipSync(message), 1);
          }
          const { fast, connect } = await both(body, headers);
          expect(fast.status, name).toBe(connect.status);
          expect(fast.headers, name).toEqual(connect.headers);
          expect(fast.trailers, name).toEqual(connect.trailers);
          if (fast.trailers["grpc-status"] !== "0") {
            expect(fast.data, name).toEqual(connect.data);
            continue;
          }
          const decode = (d: Buffer) => {
            const payload = d.subarray(5);
            return fromBinary(ForwardSoapResponseSchema, d[0] === 1 ? gunzipSync(payload) : payload);
          };
          const a = decode(fast.data);
          const b = decode(connect.data);
          expect(a.statusCode, name).toBe(b.statusCode);
          expect(stable(a.body), name).toBe(stable(b.body));
          expect(
            a.headers.map((h) => h.name),
            name,
          ).toEqual(b.headers.map((h) => h.name));
          continue;
        }
        const ct = protocol === "proto" ? "application/proto" : "application/json";
        let body: Buffer | string =
          protocol === "proto"
            ? Buffer.from(message)
            : garbage
              ? `{${word()}`
              : toJsonString(ForwardSoapRequestSchema, fromBinary(ForwardSoapRequestSchema, request(fields)));
        if (gzip === "request-gzip") {
          headers["content-encoding"] = "gzip";
          body = gzipSync(body);
        }
        const fast = await connectCall(ct, body, headers, http);
        const connect = await connectCall(upper(ct), body, headers, http);
        expect(fast.status, name).toBe(connect.status);
        // A compressed answer's length depends on the simulator's fresh MessageID.
        const sized = (h: Record<string, unknown>) =>
          h["content-encoding"] ? { ...h, "content-length": "(compressed)" } : h;
        expect(sized(fast.headers), name).toEqual(sized(connect.headers));
        const plain = (d: Buffer, h: Record<string, unknown>) =>
          h["content-encoding"] === "gzip"
            ? gunzipSync(d)
            : h["content-encoding"] === "br"
              ? brotliDecompressSync(d)
              : d;
        const fa = plain(fast.data, fast.headers);
        const ca = plain(connect.data, connect.headers);
        if (fast.status !== 200) {
          expect(JSON.parse(fa.toString()), name).toEqual(JSON.parse(ca.toString()));
          continue;
        }
        const decode = (d: Buffer) =>
          protocol === "proto"
            ? fromBinary(ForwardSoapResponseSchema, d)
            : fromJsonString(ForwardSoapResponseSchema, d.toString());
        const a = decode(fa);
        const b = decode(ca);
        expect(a.statusCode, name).toBe(b.statusCode);
        expect(stable(a.body), name).toBe(stable(b.body));
      }
    });
  });
});
