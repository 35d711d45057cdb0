/**
 * `POST /send/{service}/{path...}`: the raw SOAP/MTOM relay. The body is piped, never buffered
 * whole; eProxy's own failures are SOAP faults in the request's SOAP version.
 */
import { pipeline } from "node:stream/promises";
import type { ClientDirectory } from "../auth/callers.ts";
import { retryAfterHeader } from "../errors.ts";
import { headersOf, sessionTokenOf } from "../http/credentials.ts";
import type { Relay } from "../relay/relay.ts";
import { soapVersionOf, toSoapFault } from "../relay/soap-fault.ts";
import { restCaller } from "./caller.ts";
import { writeHead } from "./respond.ts";
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
    "content-type": fault.contentType,
    "content-length": Buffer.byteLength(fault.body),
    "cache-control": "no-store",
  });
  res.end(fault.body);
}

/** The relay routes. */
export function createRelayRoutes(deps: RelayRoutesDeps): Route[] {
  return [
    {
      method: "POST",
      pattern: "/send/:service/*",
      onError: soapFaultAnswer,
      handler: async ({ req, res, params, url }) => {
        const caller = restCaller(deps.clients, req);
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
          try {
            await pipeline(out.body, res as NodeJS.WritableStream);
          } catch {
            // The answer started: the relay traced the call as ABORTED; cutting it is all that is left.
            res.destroy();
          }
        } finally {
          res.off("close", onClose);
        }
      },
    },
  ];
}
