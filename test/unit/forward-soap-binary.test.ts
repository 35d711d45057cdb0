/**
 * ForwardSoap's binary answer written in one buffer (src/rpc/forward-soap-binary.ts) is, byte for
 * byte, what protobuf-es's `toBinary` writes, and reads back to the same message.
 */
import { create, equals, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ForwardSoapResponseSchema } from "../../gen/eproxy/v1/relay_pb.ts";
import { encodeForwardSoapResponse } from "../../src/rpc/forward-soap-binary.ts";

type Init = MessageInitShape<typeof ForwardSoapResponseSchema>;

const soap = Buffer.from(
  '<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"/>',
);
/** A body that is a view in the middle of a larger buffer (the relay's chunks are). */
const view = Buffer.concat([Buffer.alloc(100, 1), soap, Buffer.alloc(50, 2)]).subarray(
  100,
  100 + soap.length,
);

const cases: Array<[string, Init]> = [
  ["an empty message", {}],
  ["a status alone", { statusCode: 200 }],
  ["status 127 / 128 (one and two varint bytes)", { statusCode: 127, contentType: "a" }],
  ["status 128", { statusCode: 128 }],
  ["the largest uint32 status", { statusCode: 4294967295 }],
  ["a content type alone", { contentType: "application/soap+xml; charset=utf-8" }],
  ["non-ASCII content type", { contentType: "text/xml; é=ü; 🚑" }],
  ["a lone surrogate (replaced as protobuf-es replaces it)", { contentType: "x\ud800y" }],
  ["a header with empty name and value", { headers: [{}] }],
  ["a header with a name only", { headers: [{ name: "x-a" }] }],
  ["a header with a value only", { headers: [{ value: "v" }] }],
  [
    "several headers, repeated names, non-ASCII value",
    {
      statusCode: 500,
      contentType: "application/soap+xml",
      headers: [
        { name: "set-cookie", value: "a=1" },
        { name: "set-cookie", value: "b=2" },
        { name: "x-note", value: "réponse ✓" },
      ],
      body: soap,
    },
  ],
  ["a header of 200 bytes (two-byte length)", { headers: [{ name: "x-long", value: "v".repeat(200) }] }],
  ["a body alone", { body: soap }],
  ["a one-byte body", { body: new Uint8Array([0]) }],
  ["a 127-byte body", { body: new Uint8Array(127).fill(3) }],
  ["a 128-byte body", { body: new Uint8Array(128).fill(4) }],
  ["a 16383-byte body", { body: new Uint8Array(16383).fill(5) }],
  ["a 16384-byte body", { body: new Uint8Array(16384).fill(6) }],
  [
    "a 2 MiB + 1 body (four-byte length)",
    { statusCode: 200, body: new Uint8Array(2 * 1024 * 1024 + 1).fill(7) },
  ],
  ["a body that is a view at an offset", { statusCode: 200, contentType: "text/xml", body: view }],
  [
    "a relayed answer",
    {
      statusCode: 200,
      contentType: "application/soap+xml; charset=utf-8",
      headers: [
        { name: "content-type", value: "application/soap+xml; charset=utf-8" },
        { name: "date", value: "Tue, 01 Dec 2026 05:00:00 GMT" },
      ],
      body: Buffer.alloc(5120, 65),
    },
  ],
];

describe("encodeForwardSoapResponse", () => {
  for (const [name, init] of cases) {
    it(`writes toBinary's bytes: ${name}`, () => {
      const message = create(ForwardSoapResponseSchema, init);
      const expected = Buffer.from(toBinary(ForwardSoapResponseSchema, message));
      const bare = encodeForwardSoapResponse(message, 0);
      expect(bare.equals(expected)).toBe(true);
      // Reads back as the message (a lone surrogate reads back as U+FFFD, as toBinary's bytes do).
      const back = fromBinary(ForwardSoapResponseSchema, bare);
      const reference = name.startsWith("a lone surrogate")
        ? fromBinary(ForwardSoapResponseSchema, expected)
        : message;
      expect(equals(ForwardSoapResponseSchema, back, reference)).toBe(true);
      // With room for a gRPC envelope: the same message after five bytes the caller fills.
      const framed = encodeForwardSoapResponse(message, 5);
      expect(framed.length).toBe(5 + expected.length);
      expect(framed.subarray(5).equals(expected)).toBe(true);
    });
  }

  it("does not change the message it writes", () => {
    const message = create(ForwardSoapResponseSchema, {
      statusCode: 200,
      headers: [{ name: "a", value: "b" }],
      body: soap,
    });
    const before = create(ForwardSoapResponseSchema, message);
    encodeForwardSoapResponse(message, 5);
    expect(equals(ForwardSoapResponseSchema, message, before)).toBe(true);
    expect(message.body).toBe(soap);
  });
});
