/**
 * Connect JSON for ForwardSoap's two messages, with the base64 of the `body` field done by Node.
 *
 * On Node 24, protobuf-es encodes and decodes `bytes` fields in JavaScript (it uses
 * `Uint8Array.prototype.toBase64` / `setFromBase64` only where the runtime has them, which Node 24
 * does not without an experimental flag). For a relayed call that is most of Connect JSON's cost:
 * 23 µs to write a 5 KB answer's body, 6 µs to read a 2 KB request's, against under 1 µs with
 * `Buffer` (`npx node` micro-benchmark, 20,000 iterations).
 *
 * Everything but the body keeps going through protobuf-es (`fromJson` / `toJson` with the server's
 * JSON options): field names, unknown fields, types and error wording are protobuf-es's own. The
 * request's body is taken over only when it is canonical standard base64 (what every encoder
 * writes); any other request — url-safe alphabet, white space, missing padding, invalid JSON, a
 * message protobuf-es refuses — goes through Connect's serialization unchanged, which decodes it
 * or words the error. The answer's JSON is what protobuf-es writes, byte for byte (`body` is the
 * last field, so the key order is the same): the fast-path tests compare both.
 */
import { type DescMessage, fromJson, type JsonObject, type JsonValue, toJson } from "@bufbuild/protobuf";
import type { Serialization } from "@connectrpc/connect/protocol";
import { getJsonOptions } from "@connectrpc/connect/protocol";
import {
  type ForwardSoapRequest,
  ForwardSoapRequestSchema,
  type ForwardSoapResponse,
  ForwardSoapResponseSchema,
} from "../../gen/eproxy/v1/relay_pb.ts";

const EMPTY = new Uint8Array(0);

/**
 * ForwardSoap's JSON serializations. `connect` are Connect's own (the limits applied), used for
 * whatever the quick way does not take.
 */
export function createForwardSoapJson(
  jsonOptions: { ignoreUnknownFields?: boolean },
  connect: { input: Serialization<ForwardSoapRequest>; output: Serialization<ForwardSoapResponse> },
  maxBytes: number,
): { input: Serialization<ForwardSoapRequest>; output: Serialization<ForwardSoapResponse> } {
  const options = getJsonOptions(jsonOptions);
  checkBodyIsLast(ForwardSoapResponseSchema);
  return {
    input: {
      parse(data: Uint8Array): ForwardSoapRequest {
        const message = data.byteLength <= maxBytes ? quickParse(data, options) : undefined;
        return message ?? connect.input.parse(data);
      },
      serialize: (message) => connect.input.serialize(message),
    },
    output: {
      parse: (data) => connect.output.parse(data),
      serialize(message: ForwardSoapResponse): Uint8Array<ArrayBuffer> {
        if (message.body.byteLength === 0) return connect.output.serialize(message);
        const json = toJson(ForwardSoapResponseSchema, { ...message, body: EMPTY }, options) as JsonObject;
        delete json.body;
        const b = message.body;
        const b64 = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
        // The body's base64 is copied in as it is (ASCII, nothing to escape): JSON.stringify would
        // scan it for escapes and the whole text be encoded to UTF-8 again.
        const head = JSON.stringify(json);
        const open = head.length === 2 ? '"body":"' : ',"body":"';
        const headBytes = Buffer.byteLength(head, "utf8") - 1;
        const bytes: Uint8Array<ArrayBuffer> = Buffer.allocUnsafe(headBytes + open.length + b64.length + 2);
        let at = (bytes as Buffer).write(head, 0, headBytes, "utf8");
        at += (bytes as Buffer).write(open, at, "latin1");
        at += (bytes as Buffer).write(b64, at, "latin1");
        (bytes as Buffer).write('"}', at, "latin1");
        // The limit, worded as Connect's: one more pass through Connect for an answer this large.
        return bytes.byteLength <= maxBytes ? bytes : connect.output.serialize(message);
      },
    },
  };
}

/** The request, or undefined when Connect's own serialization must read it. */
function quickParse(
  data: Uint8Array,
  options: ReturnType<typeof getJsonOptions>,
): ForwardSoapRequest | undefined {
  const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8");
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch {
    return undefined;
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  // protobuf-es refuses duplicate keys, which JSON.parse keeps quiet about. Every key is a string
  // followed by a colon: as many `"` + colon as keys parsed means none was repeated (a value holding
  // `\":` only makes the count larger, and the call goes to Connect).
  if (count(text, KEY_END) !== countKeys(json)) return undefined;
  const b64 = json.body;
  if (typeof b64 !== "string" || b64.length === 0 || b64.length % 4 !== 0) return undefined;
  // Canonical standard base64 is the one text its bytes encode back to (cheaper than a regular
  // expression over the text; Node's decoder alone also takes url-safe letters and white space).
  const body = Buffer.from(b64, "base64");
  if (body.toString("base64") !== b64) return undefined;
  json.body = "";
  let message: ForwardSoapRequest;
  try {
    message = fromJson(ForwardSoapRequestSchema, json, options);
  } catch {
    return undefined;
  }
  message.body = body;
  return message;
}

/** Where a key may end: a closing quote, JSON white space, a colon. */
const KEY_END = /"[ \t\r\n]*:/g;

function count(text: string, re: RegExp): number {
  re.lastIndex = 0;
  let n = 0;
  while (re.test(text)) n++;
  return n;
}

/** Keys of every object in a parsed JSON value. */
function countKeys(v: JsonValue): number {
  if (v === null || typeof v !== "object") return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (const e of v) n += countKeys(e);
    return n;
  }
  for (const k in v) n += 1 + countKeys(v[k] as JsonValue);
  return n;
}

/** The answer's key order is protobuf-es's (field number order) only while `body` comes last. */
function checkBodyIsLast(desc: DescMessage): void {
  const last = [...desc.fields].sort((a, b) => a.number - b.number).at(-1);
  if (last?.localName !== "body" || last.fieldKind !== "scalar") {
    throw new Error(`${desc.typeName}: body must stay the last field (forward-soap-json.ts)`);
  }
}
