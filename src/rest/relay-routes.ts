/**
 * `POST /send/{service}/{path...}`: the raw SOAP/MTOM relay. The body is piped, never buffered
 * whole; eProxy's own failures are SOAP faults in the request's SOAP version.
 */
import type { Writable } from "node:stream";
import type { ClientDirectory } from "../auth/callers.ts";
import { EproxyError, retryAfterHeader, toEproxyError } from "../errors.ts";
import { headersOf, sessionTokenOf } from "../http/credentials.ts";
import { noteAccess } from "../log.ts";
import type { Relay } from "../relay/relay.ts";
import { soapVersionOf, toSoapFault } from "../relay/soap-fault.ts";
import { restCaller } from "./caller.ts";
import { type NodeRequest, writeHead } from "./respond.ts";
import type { RestContext, Route } from "./router.ts";

/** What the relay routes use. */
export interface RelayRoutesDeps {
  clients: ClientDirectory;
  relay: Pick<Relay, "forward">;
}

function soapFaultAnswer({ req, res }: RestContext, err: unknown): void {
  if (res.headersSent) {
    // The answer already started: the only honest signal left is to cut it.
    res.destroy();
    return;
  }
  const ct = req.headers["content-type"];
  const fault = toSoapFault(err, soapVersionOf(Array.isArray(ct) ? ct[0] : ct));
  writeHead(res, fault.status, {
    ...retryAfterHeader(err),
    // The SOAP fault names the code in its own words; the header gives every client the same code.
    "x-eproxy-error": toEproxyError(err).code,
    "content-type": fault.contentType,
    "content-length": Buffer.byteLength(fault.body),
    "cache-control": "no-store",
  });
  res.end(fault.body);
}

/**
 * A request that announces no body: `Content-Length: 0`, HTTP/1.x with neither Content-Length nor
 * Transfer-Encoding (RFC 9112 §6.3), or an HTTP/2 stream that ended with its headers. Relaying it
 * would only get the teleservice's own confusion back; the relay refuses a body that turns out empty
 * too (a chunked one).
 */
function hasNoBody(req: NodeRequest): boolean {
  const h = req.headers;
  if (h["content-length"] === "0") return true;
  if ("stream" in req) return (req.stream as { endAfterHeaders?: boolean }).endAfterHeaders === true;
  return h["content-length"] === undefined && h["transfer-encoding"] === undefined;
}

function prematureClose(): Error {
  return Object.assign(new Error("the response closed before the answer was complete"), {
    code: "ERR_STREAM_PREMATURE_CLOSE",
  });
}

/**
 * Writes a streamed answer into the response, waiting for `drain` when the response is full
 * (backpressure). `stream.pipeline` does the same but aborts an internal AbortController — a
 * DOMException with its stack — at the end of every call, which a relayed call should not pay.
 * Rejects when the response closes before it finished (the client hung up); leaving the loop early
 * ends the source, which releases its upstream connection.
 */
export async function streamAnswer(src: AsyncIterable<Uint8Array>, dst: Writable): Promise<void> {
  let closed = false;
  let wake: (() => void) | undefined;
  const onClose = () => {
    closed = true;
    wake?.();
  };
  const onProgress = () => wake?.();
  dst.on("close", onClose);
  dst.on("error", onClose);
  dst.on("drain", onProgress);
  dst.on("finish", onProgress);
  try {
    for await (const chunk of src) {
      if (closed) throw prematureClose();
      if (!dst.write(chunk)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        if (closed && !dst.writableFinished) throw prematureClose();
      }
    }
    dst.end();
    if (!dst.writableFinished) {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      if (!dst.writableFinished) throw prematureClose();
    }
  } finally {
    dst.off("close", onClose);
    dst.off("error", onClose);
    dst.off("drain", onProgress);
    dst.off("finish", onProgress);
  }
}

/** The relay routes. */
export function createRelayRoutes(deps: RelayRoutesDeps): Route[] {
  return [
    {
      method: "POST",
      pattern: "/send/:service/*",
      onError: soapFaultAnswer,
      handler: async ({ req, res, params, search }) => {
        const caller = restCaller(deps.clients, req);
        if (hasNoBody(req)) {
          throw new EproxyError(
            "INVALID_ARGUMENT",
            "empty body: a SOAP envelope (or an MTOM package) is expected",
          );
        }
        // The caller hanging up cancels the upstream call; once the answer is done, nothing to cancel.
        const abort = new AbortController();
        const onClose = () => {
          // An HTTP/2 stream reset by the caller closes a response that looks finished but never
          // sent its headers: that is a hang-up too.
          if (!res.writableFinished || !res.headersSent) abort.abort();
        };
        res.once("close", onClose);
        try {
          let out: Awaited<ReturnType<RelayRoutesDeps["relay"]["forward"]>>;
          try {
            out = await deps.relay.forward({
              caller,
              sessionToken: sessionTokenOf(headersOf(req)),
              service: params.service as string,
              path: `${params["*"] ?? ""}${search}`,
              headers: req.headers,
              body: req as AsyncIterable<Uint8Array>,
              signal: abort.signal,
            });
          } catch (err) {
            // A caller that hung up is not an eProxy failure: its access line says so, at info.
            if (!abort.signal.aborted) throw err;
            noteAccess({ code: "CLIENT_CLOSED" });
            return;
          }
          writeHead(res, out.status, out.headers as Record<string, string | string[]>);
          try {
            await streamAnswer(out.body, res as unknown as Writable);
          } catch (err) {
            // The answer started: the relay traced the call (ABORTED, or the teleservice's failure);
            // cutting it is all that is left.
            noteAccess({
              code: abort.signal.aborted
                ? "CLIENT_CLOSED"
                : err instanceof EproxyError
                  ? err.code
                  : "UPSTREAM_BAD_RESPONSE",
            });
            res.destroy();
          }
        } finally {
          res.off("close", onClose);
        }
      },
    },
  ];
}
