/**
 * Fast path for `eproxy.v1.RelayService/ForwardSoap`, the relay of typed clients: plain gRPC and
 * Connect unary calls, served with Connect's own parts instead of its generic machinery (async
 * iterable pipelines, the universal request/response, DOMExceptions per call) — about half the CPU
 * per call (figures and history: bench/reports/hot-path.md; `server.forwardSoapFastPath: false` turns
 * it off).
 *
 * It serves ForwardSoap only when it comes as plain gRPC (HTTP/2, `application/grpc` or
 * `application/grpc+proto`) or as a Connect unary POST (`application/proto` or `application/json`,
 * HTTP/1.1 or HTTP/2), and only when no compression is in play: the request is not compressed
 * (`grpc-encoding` / `content-encoding`) and the caller does not accept a compression Connect would
 * answer with (`grpc-accept-encoding` / `accept-encoding` naming gzip or br): then Connect serves the
 * call and negotiates. Everything else — gRPC-Web, Connect streaming or GET, other methods — goes to
 * Connect too. Its parts: `createHandlerContext` (deadlines, linked signals),
 * `invokeUnaryImplementation` (the same interceptors around the same implementation), the method's
 * serialization (JSON's base64 by Node: forward-soap-json.ts; the binary answer in one buffer:
 * forward-soap-binary.ts), `setTrailerStatus` / `errorToJsonBytes` / `trailerMux` for the answer.
 *
 * Fences: it runs only on the Connect release it was checked against (`CONNECT_VERSION`, else
 * `forwardSoapFastPathUsable` says no and the server uses Connect alone);
 * test/unit/forward-soap-fast-path-pins.test.ts fails when a Connect part it imports or a message it
 * words as Connect does changes; test/int/forward-soap-fast-path.int.test.ts compares its answers with
 * Connect's on fixed cases and on random ones (messages, metadata, deadlines, gzip either way).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { createRequire } from "node:module";
import { fromBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createHandlerContext,
  createMethodImplSpec,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  invokeUnaryImplementation,
  mergeNonProtocolHeaders,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  errorToJsonBytes,
  parseTimeout as parseConnectTimeout,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { type ForwardSoapResponse, RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import { encodeForwardSoapResponse } from "./forward-soap-binary.ts";
import { createForwardSoapJson } from "./forward-soap-json.ts";
import { PARSE_FAILURE, PUBLIC_MESSAGE } from "./strict-messages.ts";

const method = RelayService.method.forwardSoap;

/** The @connectrpc/connect release whose parts and words this fast path was checked against. */
export const CONNECT_VERSION = "2.3.0";

/** The installed @connectrpc/connect release (`unknown` when it cannot be read). */
export function installedConnectVersion(): string {
  try {
    // Its package.json is not exported: found from the entry point's directory.
    const require = createRequire(import.meta.url);
    const entry = require.resolve("@connectrpc/connect");
    const root = entry.slice(0, entry.lastIndexOf("/dist/"));
    return (require(`${root}/package.json`) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

/** Whether the fast path may run: the installed Connect is the release it was checked against. */
export function forwardSoapFastPathUsable(): boolean {
  return installedConnectVersion() === CONNECT_VERSION;
}

/** Compressions Connect's node adapter answers with (its default `acceptCompression`). */
const CONNECT_COMPRESSIONS = /(?:^|,)\s*(?:gzip|br)\s*(?:;|,|$)/i;

/** The request path this fast path answers. */
export const FORWARD_SOAP_PATH = `/${RelayService.typeName}/${method.name}`;

/**
 * The reason the handler context is aborted with once the answer is known: it releases the
 * context's listeners and deadline timer, as Connect's `context.abort()` does, without building a
 * DOMException for every call. Nothing listens any more by then.
 */
const CALL_ENDED = new ConnectError("call ended", Code.Canceled);

/** What the fast path needs from the server. */
export interface ForwardSoapFastPathOptions {
  /** The RelayService implementation registered on the Connect router. */
  impl: ServiceImpl<typeof RelayService>;
  /** The router's interceptors (outermost first). */
  interceptors: Interceptor[];
  /** Largest message, both ways (Connect's readMaxBytes and writeMaxBytes). */
  maxBytes: number;
  /** The context values the Connect adapter gives handlers. */
  contextValues: (req: Http2ServerRequest) => ContextValues;
  /** The Connect adapter's JSON options (Connect JSON calls and error documents). */
  jsonOptions?: { ignoreUnknownFields?: boolean };
}

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * Returns a function that answers a request when it is a plain gRPC or Connect unary ForwardSoap
 * call (and says so), or leaves it alone (false) for Connect.
 */
export function createForwardSoapFastPath(
  opts: ForwardSoapFastPathOptions,
): (req: AnyRequest, res: AnyResponse) => boolean {
  const spec = createMethodImplSpec(method, opts.impl.forwardSoap.bind(opts.impl)) as Parameters<
    typeof invokeUnaryImplementation
  >[0];
  const jsonOptions = opts.jsonOptions ?? {};
  const serialization = createMethodSerializationLookup(method, undefined, jsonOptions, {
    readMaxBytes: opts.maxBytes,
    writeMaxBytes: opts.maxBytes,
  });
  const json = createForwardSoapJson(
    jsonOptions,
    { input: serialization.getI(false), output: serialization.getO(false) },
    opts.maxBytes,
  );

  /** What both protocols share: the request's headers, the caller's signal, the handler context. */
  function begin(
    req: AnyRequest,
    res: AnyResponse,
    protocolName: "grpc" | "connect",
    timeoutMs: number | undefined,
    responseHeader: Record<string, string>,
    responseTrailer: Record<string, string>,
  ) {
    // A record: createHandlerContext builds the Headers from it (once; it copies a Headers too).
    const requestHeader: Record<string, string> = {};
    const h = req.headers;
    for (const k in h) {
      if (k.charCodeAt(0) === 58 /* ":" */) continue;
      const v = h[k];
      if (typeof v === "string") requestHeader[k] = v;
      else if (Array.isArray(v)) requestHeader[k] = v.join(", ");
    }
    // The caller went away before the answer: what the relay does with this signal (stop the
    // upstream call, trace ABORTED) is what it does on Connect. An HTTP/2 compat response's
    // writableFinished reads true even for a stream the caller reset: its rstCode tells (server.ts).
    const caller = new AbortController();
    const state = { answered: false };
    res.once("close", () => {
      const rst = (res as Http2ServerResponse).stream?.rstCode ?? 0;
      if (!state.answered || rst !== 0 || !res.writableFinished) {
        caller.abort(new ConnectError("the caller went away", Code.Canceled));
      }
    });
    const context = createHandlerContext({
      service: RelayService,
      method,
      protocolName,
      requestMethod: "POST",
      timeoutMs,
      requestSignal: caller.signal,
      requestHeader,
      url: `https://${h[":authority"] ?? h.host ?? "localhost"}${FORWARD_SOAP_PATH}`,
      responseHeader,
      responseTrailer,
      contextValues: opts.contextValues(req as Http2ServerRequest),
    });
    return { context, state };
  }

  async function serveGrpc(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
    const timeout = parseTimeout(
      (req.headers["grpc-timeout"] as string | undefined) ?? null,
      Number.MAX_SAFE_INTEGER,
    );
    const { context, state } = begin(
      req,
      res,
      "grpc",
      timeout.timeoutMs,
      { "content-type": "application/grpc+proto" },
      { "grpc-status": "0" },
    );
    let answer: Buffer | undefined;
    try {
      if (timeout.error) throw timeout.error;
      const input = parseEnvelope(await readBody(req, opts.maxBytes), opts.maxBytes);
      const output = await invokeUnaryImplementation(spec, context, input, opts.interceptors);
      const framed = encodeForwardSoapResponse(output as ForwardSoapResponse, 5);
      assertWriteMaxBytes(opts.maxBytes, framed.length - 5);
      framed[0] = 0;
      framed.writeUInt32BE(framed.length - 5, 1);
      answer = framed;
    } catch (err) {
      setTrailerStatus(
        context.responseTrailer,
        err instanceof ConnectError
          ? err
          : new ConnectError("internal error", Code.Internal, undefined, undefined, err),
      );
    } finally {
      context.abort(CALL_ENDED);
    }
    if (res.destroyed) return;
    state.answered = true;
    if (!req.complete) {
      // Answered before the whole request was read (an early error): once the trailers are out,
      // reset the stream with NO_ERROR so that the caller stops sending (Connect does the same).
      const stream = res.stream;
      stream.once("wantTrailers", () =>
        setImmediate(() => {
          if (stream.state.remoteClose === 0) stream.close(0);
        }),
      );
    }
    res.writeHead(200, toNodeHeaders(context.responseHeader));
    if (answer) res.write(answer);
    res.addTrailers(toNodeHeaders(context.responseTrailer));
    res.end();
  }

  async function serveConnect(req: AnyRequest, res: AnyResponse, binary: boolean): Promise<void> {
    const timeout = parseConnectTimeout(
      (req.headers["connect-timeout-ms"] as string | undefined) ?? null,
      Number.MAX_SAFE_INTEGER,
    );
    const { context, state } = begin(
      req,
      res,
      "connect",
      timeout.timeoutMs,
      { "content-type": binary ? "application/proto" : "application/json" },
      {},
    );
    let status = 200;
    let body: Uint8Array;
    try {
      if (timeout.error) throw timeout.error;
      const bytes = await readUnary(req, opts.maxBytes, req.headers["content-length"]);
      const input = (binary ? serialization.getI(true) : json.input).parse(bytes);
      const output = await invokeUnaryImplementation(spec, context, input, opts.interceptors);
      if (binary) {
        body = encodeForwardSoapResponse(output as ForwardSoapResponse, 0);
        assertWriteMaxBytes(opts.maxBytes, body.byteLength);
      } else {
        body = json.output.serialize(output as ForwardSoapResponse);
      }
    } catch (err) {
      let error =
        err instanceof ConnectError
          ? err
          : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
      // A message that does not parse is the caller's fault (strict-messages.ts, on Connect).
      if (error.code === Code.Internal && PARSE_FAILURE.test(error.rawMessage)) {
        error = new ConnectError(PUBLIC_MESSAGE, Code.InvalidArgument);
      }
      status = codeToHttpStatus(error.code);
      context.responseHeader.set("content-type", "application/json");
      if (!error.isWireError) mergeNonProtocolHeaders(context.responseHeader, error.metadata);
      // Error documents are written with the default JSON write options, as Connect writes them.
      body = errorToJsonBytes(error, {});
    } finally {
      context.abort(CALL_ENDED);
    }
    if (res.destroyed) return;
    state.answered = true;
    const header = trailerMux(context.responseHeader, context.responseTrailer);
    header.set("content-length", String(body.byteLength));
    (res as ServerResponse).writeHead(status, toNodeHeaders(header));
    res.end(body);
  }

  return (req, res) => {
    if (req.method !== "POST" || req.url !== FORWARD_SOAP_PATH) return false;
    const ct = req.headers["content-type"];
    if (ct === "application/grpc" || ct === "application/grpc+proto") {
      if (req.httpVersionMajor !== 2) return false;
      const encoding = req.headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      if (acceptsCompression(req.headers["grpc-accept-encoding"])) return false;
      serveGrpc(req as Http2ServerRequest, res as Http2ServerResponse).catch(() => res.destroy());
      return true;
    }
    const binary = ct === "application/proto";
    if (binary || ct === "application/json" || ct === "application/json; charset=utf-8") {
      const encoding = req.headers["content-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      if (acceptsCompression(req.headers["accept-encoding"])) return false;
      serveConnect(req, res, binary).catch(() => res.destroy());
      return true;
    }
    return false;
  };
}

/** The caller accepts an answer compressed as Connect would compress it: Connect negotiates. */
function acceptsCompression(accept: string | string[] | undefined): boolean {
  if (accept === undefined) return false;
  return CONNECT_COMPRESSIONS.test(Array.isArray(accept) ? accept.join(",") : accept);
}

/**
 * The whole request body, read with stream events (no async iterator of the request). `check` sees
 * the bytes so far after each chunk and once more at the end (`ended`): an error it returns refuses
 * the body at once.
 */
function collect(
  req: AnyRequest,
  check: (n: number, chunks: Buffer[], ended: boolean) => ConnectError | undefined,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("close", onClose);
    };
    const fail = (err: ConnectError) => {
      done();
      reject(err);
    };
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      const err = check(n, chunks, false);
      if (err) fail(err);
    };
    const onEnd = () => {
      const err = check(n, chunks, true);
      if (err) return fail(err);
      done();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, n));
    };
    const onClose = () => fail(new ConnectError("the caller reset the stream", Code.Canceled));
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("close", onClose);
  });
}

/**
 * A gRPC request body. Refused as soon as the first envelope declares a message over `max`
 * (Connect's readMaxBytes, worded as Connect words it), or when more than that message and one
 * more envelope header arrive (a second message, refused by `parseEnvelope`).
 */
function readBody(req: AnyRequest, max: number): Promise<Buffer> {
  let declared = -1;
  return collect(req, (n, chunks, ended) => {
    if (ended) return undefined;
    if (declared < 0 && n >= 5) {
      declared = (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, n)).readUInt32BE(1);
      if (declared > max) {
        return new ConnectError(
          `message size ${declared} is larger than configured readMaxBytes ${max}`,
          Code.ResourceExhausted,
        );
      }
    }
    if (declared >= 0 && n > 5 + declared + 5 + max) {
      return new ConnectError(
        "protocol error: received extra input message for unary method",
        Code.Unimplemented,
      );
    }
    return undefined;
  });
}

/** A Connect unary request body, refused as Connect's `readAllBytes` refuses it (same limits, same words). */
function readUnary(req: AnyRequest, max: number, contentLength: string | undefined): Promise<Buffer> {
  const hint = contentLength === undefined ? Number.NaN : Number.parseInt(contentLength, 10);
  const known = Number.isSafeInteger(hint) && hint >= 0;
  if (known && hint > max) {
    return Promise.reject(
      new ConnectError(
        `message size ${hint} is larger than configured readMaxBytes ${max}`,
        Code.ResourceExhausted,
      ),
    );
  }
  return collect(req, (n, _chunks, ended) => {
    if (known && (n > hint || (ended && n < hint))) {
      return new ConnectError(`protocol error: promised ${hint} bytes, received ${n}`, Code.InvalidArgument);
    }
    if (!known && n > max) {
      return new ConnectError(
        `message size is larger than configured readMaxBytes ${max}`,
        Code.ResourceExhausted,
      );
    }
    return undefined;
  });
}

/** The one message of a unary gRPC request (errors as Connect words them). */
function parseEnvelope(body: Buffer, max: number) {
  if (body.length < 5) {
    if (body.length === 0) {
      throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
    }
    throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  const flags = body[0] as number;
  const length = body.readUInt32BE(1);
  if (length > max) {
    throw new ConnectError(
      `message size ${length} is larger than configured readMaxBytes ${max}`,
      Code.ResourceExhausted,
    );
  }
  if (body.length < 5 + length) {
    throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  if (body.length > 5 + length) {
    throw new ConnectError(
      "protocol error: received extra input message for unary method",
      Code.Unimplemented,
    );
  }
  if ((flags & 0b01) === 0b01) {
    throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  }
  try {
    return fromBinary(method.input, body.subarray(5));
  } catch {
    throw new ConnectError(PUBLIC_MESSAGE, Code.InvalidArgument);
  }
}

/** Connect's writeMaxBytes refusal (its `assertWriteMaxBytes` is not exported), in its words. */
function assertWriteMaxBytes(max: number, size: number): void {
  if (size > max) {
    throw new ConnectError(
      `message size ${size} is larger than configured writeMaxBytes ${max}`,
      Code.ResourceExhausted,
    );
  }
}

/** A WHATWG Headers as Node's header object. */
function toNodeHeaders(headers: Headers): Record<string, string> {
  const o: Record<string, string> = {};
  headers.forEach((v, k) => {
    o[k] = v;
  });
  return o;
}
