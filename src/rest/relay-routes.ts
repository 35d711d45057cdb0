/**
 * `POST /send/{service}/{path...}`: the raw SOAP/MTOM relay. The body is piped, never buffered
 * whole; eProxy's own failures are SOAP faults in the request's SOAP version.
 */
import { pipeline } from "node:stream/promises";
import type { Deps } from "../deps.ts";
import { retryAfterHeader } from "../errors.ts";
import { soapVersionOf, toSoapFault } from "../relay/soap-fault.ts";
import { sessionTokenOf } from "../rpc/peer.ts";
import { headersOf, restCaller } from "./auth-routes.ts";
import { type RestContext, type Route, writeHead } from "./router.ts";

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
    "content-type": fault.contentType,
    "content-length": Buffer.byteLength(fault.body),
    "cache-control": "no-store",
  });
  res.end(fault.body);
}

/** The relay routes. */
export function createRelayRoutes(deps: Deps): Route[] {
  return [
    {
      method: "POST",
      pattern: "/send/:service/*",
      onError: soapFaultAnswer,
      handler: async ({ req, res, params, url }) => {
        const caller = restCaller(deps, req);
        const started = performance.now();
        let bytesOut = 0;
        // The caller hanging up cancels the upstream call; once the answer is done, nothing to cancel.
        const abort = new AbortController();
        const onClose = () => {
          if (!res.writableFinished) abort.abort();
        };
        res.once("close", onClose);
        try {
          const out = await deps.relay.forward({
            caller,
            sessionToken: sessionTokenOf(headersOf(req)),
            service: params.service as string,
            path: `${params["*"] ?? ""}${url.search}`,
            headers: req.headers,
            body: req as AsyncIterable<Uint8Array>,
            signal: abort.signal,
          });
          writeHead(res, out.status, out.headers as Record<string, string | string[]>);
          let outcome = "OK";
          try {
            await pipeline(
              out.body,
              async function* (src: AsyncIterable<Buffer>) {
                for await (const c of src) {
                  bytesOut += c.length;
                  yield c;
                }
              },
              res as NodeJS.WritableStream,
            );
          } catch (err) {
            outcome = "ABORTED";
            throw err;
          } finally {
            deps.traces.record({
              type: "SEND",
              clientId: caller.id,
              nationalId: out.session.nationalId,
              sessionId: out.session.id,
              service: params.service as string,
              method: "POST",
              path: `/${params["*"] ?? ""}`,
              ...(out.soap.action ? { soapAction: out.soap.action } : {}),
              upstreamStatus: out.status,
              durationMs: Math.round(performance.now() - started),
              bytesIn: out.bytesIn(),
              bytesOut,
              correlationId: out.correlationId,
              outcome,
            });
          }
        } finally {
          res.off("close", onClose);
        }
      },
    },
  ];
}
