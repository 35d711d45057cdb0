/**
 * ForwardSoap's JSON with Node's base64 (src/rpc/forward-soap-json.ts) reads and writes what
 * Connect's JSON serialization reads and writes: same messages, same bytes, same errors.
 */
import { create, equals, toJsonString } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { createMethodSerializationLookup } from "@connectrpc/connect/protocol";
import { describe, expect, it } from "vitest";
import {
  ForwardSoapRequestSchema,
  ForwardSoapResponseSchema,
  RelayService,
} from "../../gen/eproxy/v1/relay_pb.ts";
import { createForwardSoapJson } from "../../src/rpc/forward-soap-json.ts";

const MAX = 64 * 1024;
const connect = createMethodSerializationLookup(
  RelayService.method.forwardSoap,
  undefined,
  { ignoreUnknownFields: false },
  { readMaxBytes: MAX, writeMaxBytes: MAX },
);
const quick = createForwardSoapJson(
  { ignoreUnknownFields: false },
  { input: connect.getI(false), output: connect.getO(false) },
  MAX,
);

/** Every byte value, so that the base64 has `+`, `/` and both paddings somewhere. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 * 3 + 2 }, (_, i) => (i * 7) % 256));

function outcome(f: () => unknown): { ok: unknown } | { error: string; code: number } {
  try {
    return { ok: f() };
  } catch (e) {
    const err = ConnectError.from(e);
    return { error: err.message, code: err.code };
  }
}

function expectSameParse(text: string) {
  const data = Buffer.from(text, "utf8");
  const a = outcome(() => quick.input.parse(data));
  const b = outcome(() => connect.getI(false).parse(data));
  if ("ok" in b && "ok" in a) {
    expect(equals(ForwardSoapRequestSchema, a.ok as never, b.ok as never)).toBe(true);
    expect(Buffer.from((a.ok as { body: Uint8Array }).body)).toEqual(
      Buffer.from((b.ok as { body: Uint8Array }).body),
    );
  } else {
    expect(a).toEqual(b);
  }
  return b;
}

describe("ForwardSoap JSON with Node's base64", () => {
  const base = { sessionToken: "eps_x", service: "insi", contentType: "text/xml" };
  const b64 = ALL_BYTES.toString("base64");

  it.each([
    ["canonical base64", { ...base, body: b64 }],
    ["one padding character", { ...base, body: ALL_BYTES.subarray(1).toString("base64") }],
    ["two padding characters", { ...base, body: ALL_BYTES.subarray(2).toString("base64") }],
    ["url-safe base64", { ...base, body: ALL_BYTES.toString("base64url") }],
    ["base64 without its padding", { ...base, body: b64.replace(/=+$/, "") }],
    ["base64 with line breaks", { ...base, body: b64.replace(/(.{76})/g, "$1\r\n") }],
    ["base64 with inner padding", { ...base, body: "QQ==QQ==" }],
    ["an empty body", { ...base, body: "" }],
    ["a null body", { ...base, body: null }],
    ["no body", base],
    ["proto field names", { session_token: "eps_x", content_type: "text/xml", body: b64 }],
    [
      "headers and every field",
      { ...base, path: "/a?b=c", soapAction: "urn:x", headers: [{ name: "a", value: "b" }], body: b64 },
    ],
  ])("reads %s as Connect does", (_name, json) => {
    const b = expectSameParse(JSON.stringify(json));
    expect("ok" in b).toBe(true);
  });

  it.each([
    ["invalid base64 characters", { ...base, body: "QUJD*A==" }],
    ["a truncated base64 group", { ...base, body: "QUJDR" }],
    ["a number for the body", { ...base, body: 5 }],
    ["an unknown field", { ...base, body: b64, color: "blue" }],
    ["a field of the wrong type", { ...base, service: 5, body: b64 }],
    ["headers of the wrong shape", { ...base, headers: { a: "b" }, body: b64 }],
  ])("refuses %s as Connect does", (_name, json) => {
    const b = expectSameParse(JSON.stringify(json));
    expect("error" in b).toBe(true);
  });

  it.each([
    ["JSON that does not parse", "{not json"],
    ["an array", "[1,2]"],
    ["a string", '"body"'],
    ["null", "null"],
    ["a body given twice", `{"body":"QUJD","body":"${b64}"}`],
    ["a key given twice with white space", `{"service" :"a",\n"service"\t: "b","body":"${b64}"}`],
    ["a key given twice in a header", `{"headers":[{"name":"a","name":"b"}],"body":"${b64}"}`],
    ["a key written with an escape", `{"servic\\u0065":"a","service":"b","body":"${b64}"}`],
    ["a value holding a quote and a colon", `{"soapAction":"urn:\\":x","body":"${b64}"}`],
  ])("reads or refuses %s as Connect does", (_name, text) => {
    expectSameParse(text);
  });

  it("decodes canonical base64 itself, and leaves the rest to Connect", () => {
    const read = (json: unknown) => quick.input.parse(Buffer.from(JSON.stringify(json))).body;
    // Node's decoder gives a Buffer; protobuf-es a plain Uint8Array.
    expect(Buffer.isBuffer(read({ ...base, body: b64 }))).toBe(true);
    expect(Buffer.isBuffer(read({ ...base, headers: [{ name: "a", value: "b" }], body: b64 }))).toBe(true);
    expect(Buffer.isBuffer(read({ ...base, body: ALL_BYTES.toString("base64url") }))).toBe(false);
    expect(Buffer.isBuffer(read({ ...base, soapAction: 'urn:":x', body: b64 }))).toBe(false);
  });

  it("refuses a request over the size limit with Connect's words", () => {
    const big = Buffer.from(JSON.stringify({ ...base, body: Buffer.alloc(MAX).toString("base64") }));
    const a = outcome(() => quick.input.parse(big));
    expect(a).toEqual(outcome(() => connect.getI(false).parse(big)));
    expect("error" in a && a.error).toMatch(/readMaxBytes/);
  });

  it.each([
    ["a body", ALL_BYTES],
    ["one byte", Buffer.from([0xfb])],
    ["an empty body", Buffer.alloc(0)],
  ])("writes an answer with %s byte for byte as Connect does", (_name, body) => {
    const answer = create(ForwardSoapResponseSchema, {
      statusCode: 200,
      contentType: "application/soap+xml; charset=utf-8",
      headers: [{ name: "x-trace", value: "é" }],
      body: body.subarray(0),
    });
    const a = Buffer.from(quick.output.serialize(answer));
    expect(a.toString("utf8")).toBe(Buffer.from(connect.getO(false).serialize(answer)).toString("utf8"));
    expect(a.toString("utf8")).toBe(toJsonString(ForwardSoapResponseSchema, answer));
  });

  it.each([
    ["a body alone (no other field)", { body: ALL_BYTES }],
    ["a status and a body", { statusCode: 502, body: Buffer.from("<a/>") }],
    [
      "non-ASCII and escaped strings before the body",
      {
        contentType: 'text/xml; q="é"',
        headers: [
          { name: "x-a", value: "line\nbreak \u0001 🚑" },
          { name: "x-b", value: "\\" },
        ],
        body: Buffer.from([0, 255, 62, 63]),
      },
    ],
  ])("writes %s byte for byte as protobuf-es does", (_name, init) => {
    const answer = create(ForwardSoapResponseSchema, init);
    const a = Buffer.from(quick.output.serialize(answer));
    expect(a.equals(Buffer.from(connect.getO(false).serialize(answer)))).toBe(true);
  });

  it("writes the body of a Buffer view at its own offset", () => {
    const pool = Buffer.from("xxxxHELLOyyyy");
    const answer = create(ForwardSoapResponseSchema, { statusCode: 200, body: pool.subarray(4, 9) });
    expect(JSON.parse(Buffer.from(quick.output.serialize(answer)).toString()).body).toBe(
      Buffer.from("HELLO").toString("base64"),
    );
  });

  it("refuses an answer over the size limit with Connect's words", () => {
    const answer = create(ForwardSoapResponseSchema, { statusCode: 200, body: Buffer.alloc(MAX) });
    const a = outcome(() => quick.output.serialize(answer));
    expect(a).toEqual(outcome(() => connect.getO(false).serialize(answer)));
    expect("error" in a && a.error).toMatch(/writeMaxBytes/);
  });
});
