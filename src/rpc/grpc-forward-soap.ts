/**
 * gRPC fast path for `eproxy.v1.RelayService/ForwardSoap`, the relay of typed gRPC clients.
 *
 * Connect serves every RPC through one generic pipeline of async iterables (split the envelopes,
 * parse, invoke, serialize, join, catch), written as down-levelled async generators, and aborts two
 * AbortControllers per call without a reason (each builds a DOMException, stack included). For a
 * relayed 2 KB call that machinery cost more than the relay itself: 0.40–0.44 ms of CPU per call
 * against 0.16–0.17 ms for the same call on `POST /send` over HTTP/2 (h2load, 16 connections).
 *
 * This serves that one unary RPC when it comes as plain gRPC — HTTP/2, `application/grpc` or
 * `application/grpc+proto`, no message compression — with Connect's own parts, so that the answer
 * is the one Connect gives: `createHandlerContext` (deadline from `grpc-timeout`, linked signals),
 * `invokeUnaryImplementation` (the same interceptors, in the same order, around the same
 * implementation), `setTrailerStatus` (status, message, details and error metadata in the
 * trailers). Everything else — gRPC-Web, Connect, JSON, compressed messages, other methods — goes
 * to Connect. `test/int/grpc-fast-path.int.test.ts` compares both answers, success and errors.
 * Answers are not compressed (no `grpc-encoding`), whatever `grpc-accept-encoding` offers: gRPC lets
 * a server answer identity, and a relayed SOAP answer costs more CPU to gzip than it saves here.
 */
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createHandlerContext,
  createMethodImplSpec,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import { invokeUnaryImplementation } from "@connectrpc/connect/protocol";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { type ForwardSoapResponse, RelayService } from "../../gen/eproxy/v1/relay_pb.ts";

const method = RelayService.method.forwardSoap;

/** The request path this fast path answers. */
export const FORWARD_SOAP_PATH = `/${RelayService.typeName}/${method.name}`;

/** The message of a request that does not parse (as strict-messages.ts answers it on Connect). */
const MALFORMED = "malformed request message";

/**
 * The reason the handler context is aborted with once the answer is known: it releases the
 * context's listeners and deadline timer, as Connect's `context.abort()` does, without building a
 * DOMException for every call. Nothing listens any more by then.
 */
const CALL_ENDED = new ConnectError("call ended", Code.Canceled);

/** What the fast path needs from the server. */
export interface GrpcForwardSoapOptions {
  /** The RelayService implementation registered on the Connect router. */
  impl: ServiceImpl<typeof RelayService>;
  /** The router's interceptors (outermost first). */
  interceptors: Interceptor[];
  /** Largest message, both ways (Connect's readMaxBytes and writeMaxBytes). */
  maxBytes: number;
  /** The context values the Connect adapter gives handlers. */
  contextValues: (req: Http2ServerRequest) => ContextValues;
}

/**
 * Returns a function that answers a request when it is a plain gRPC ForwardSoap call (and says
 * so), or leaves it alone (false) for Connect.
 */
export function createGrpcForwardSoap(
  opts: GrpcForwardSoapOptions,
): (req: Http2ServerRequest, res: Http2ServerResponse) => boolean {
  const spec = createMethodImplSpec(method, opts.impl.forwardSoap.bind(opts.impl)) as Parameters<
    typeof invokeUnaryImplementation
  >[0];

  async function serve(req: Http2ServerRequest, res: Http2ServerResponse): Promise<void> {
    const requestHeader = new Headers();
    const h = req.headers;
    for (const k in h) {
      if (k.charCodeAt(0) === 58 /* ":" */) continue;
      const v = h[k];
      if (typeof v === "string") requestHeader.append(k, v);
      else if (Array.isArray(v)) for (const e of v) requestHeader.append(k, e);
    }
    // The caller went away before the answer: what the relay does with this signal (stop the
    // upstream call, trace ABORTED) is what it does on Connect.
    // (The compat response's "close" comes after a "finish" and writableFinished reads true even for a
    // stream the caller reset: the stream's rstCode tells, as in server.ts.)
    const caller = new AbortController();
    const stream = res.stream;
    let answered = false;
    stream.once("close", () => {
      if (!answered || (stream.rstCode ?? 0) !== 0) {
        caller.abort(new ConnectError("the caller reset the stream", Code.Canceled));
      }
    });
    const timeout = parseTimeout(requestHeader.get("grpc-timeout"), Number.MAX_SAFE_INTEGER);
    const context = createHandlerContext({
      service: RelayService,
      method,
      protocolName: "grpc",
      requestMethod: "POST",
      timeoutMs: timeout.timeoutMs,
      requestSignal: caller.signal,
      requestHeader,
      url: `https://${h[":authority"] ?? "localhost"}${FORWARD_SOAP_PATH}`,
      responseHeader: { "content-type": "application/grpc+proto" },
      responseTrailer: { "grpc-status": "0" },
      contextValues: opts.contextValues(req),
    });
    let answer: Buffer | undefined;
    try {
      if (timeout.error) throw timeout.error;
      const input = parseEnvelope(await readBody(req, opts.maxBytes), opts.maxBytes);
      const output = await invokeUnaryImplementation(spec, context, input, opts.interceptors);
      const bytes = toBinary(method.output, output as ForwardSoapResponse);
      if (bytes.length > opts.maxBytes) {
        throw new ConnectError(
          `message size ${bytes.length} is larger than configured writeMaxBytes ${opts.maxBytes}`,
          Code.ResourceExhausted,
        );
      }
      answer = Buffer.allocUnsafe(5 + bytes.length);
      answer[0] = 0;
      answer.writeUInt32BE(bytes.length, 1);
      answer.set(bytes, 5);
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
    answered = true;
    if (!req.complete) {
      // Answered before the whole request was read (an early error): once the trailers are out,
      // reset the stream with NO_ERROR so that the caller stops sending (Connect does the same).
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

  return (req, res) => {
    if (req.httpVersionMajor !== 2 || req.method !== "POST" || req.url !== FORWARD_SOAP_PATH) return false;
    const ct = req.headers["content-type"];
    if (ct !== "application/grpc" && ct !== "application/grpc+proto") return false;
    const encoding = req.headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    serve(req, res).catch(() => res.destroy());
    return true;
  };
}

/**
 * The whole request body. Refused as soon as the first envelope declares a message over `max`
 * (Connect's readMaxBytes, worded as Connect words it), or when more than that message and one
 * more envelope header arrive (a second message, refused by `parseEnvelope`).
 */
function readBody(req: Http2ServerRequest, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let declared = -1;
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (declared < 0 && n >= 5) {
        const head = chunks.length === 1 ? c : Buffer.concat(chunks, n);
        declared = head.readUInt32BE(1);
        if (declared > max) {
          done();
          reject(
            new ConnectError(
              `message size ${declared} is larger than configured readMaxBytes ${max}`,
              Code.ResourceExhausted,
            ),
          );
          return;
        }
      }
      if (declared >= 0 && n > 5 + declared + 5 + max) {
        done();
        reject(
          new ConnectError(
            "protocol error: received extra input message for unary method",
            Code.Unimplemented,
          ),
        );
      }
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, n));
    };
    const onClose = () => {
      done();
      reject(new ConnectError("the caller reset the stream", Code.Canceled));
    };
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("close", onClose);
    };
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("close", onClose);
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
    throw new ConnectError(MALFORMED, Code.InvalidArgument);
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
