/**
 * Connect implementation of eproxy.v1.RelayService: the same relay as `/send`, with the body in
 * the message (bounded by the server's message size limit).
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import type { Deps } from "../deps.ts";
import { EproxyError } from "../errors.ts";
import type { HeaderMap } from "../relay/ports.ts";
import { discard } from "../relay/relay.ts";
import { callerOf } from "./auth-service.ts";
import { sessionTokenOf } from "./peer.ts";

/** Creates the RelayService implementation. */
export function createRelayService(deps: Deps): ServiceImpl<typeof RelayService> {
  const max = deps.config.server.maxRequestBytes;
  return {
    async forwardSoap(req, ctx) {
      const caller = callerOf(deps, ctx);
      const headers: HeaderMap = {};
      for (const h of req.headers) headers[h.name.toLowerCase()] = h.value;
      if (!req.contentType) throw new EproxyError("INVALID_ARGUMENT", "contentType is required");
      headers["content-type"] = req.contentType;
      if (req.soapAction) headers.soapaction = req.soapAction;
      headers["content-length"] = String(req.body.length);
      const out = await deps.relay.forward({
        caller,
        sessionToken: sessionTokenOf(ctx.requestHeader, req.sessionToken),
        service: req.service,
        path: req.path,
        headers,
        body: (async function* () {
          yield req.body;
        })(),
        signal: ctx.signal,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of out.body as AsyncIterable<Buffer>) {
        size += c.length;
        if (size > max) {
          discard(out.body);
          throw new EproxyError(
            "PAYLOAD_TOO_LARGE",
            `answer larger than ${max} bytes: use POST /send for large documents`,
          );
        }
        chunks.push(c);
      }
      deps.traces.record({
        type: "SEND",
        clientId: caller.id,
        nationalId: out.session.nationalId,
        sessionId: out.session.id,
        service: req.service,
        method: "POST",
        path: `/${req.path.split("?")[0]?.replace(/^\/+/, "") ?? ""}`,
        ...(out.soap.action ? { soapAction: out.soap.action } : {}),
        upstreamStatus: out.status,
        bytesIn: out.bytesIn(),
        bytesOut: size,
        correlationId: out.correlationId,
        outcome: "OK",
      });
      const ct = out.headers["content-type"];
      return {
        statusCode: out.status,
        contentType: Array.isArray(ct) ? (ct[0] ?? "") : (ct ?? ""),
        headers: Object.entries(out.headers).flatMap(([name, v]) =>
          (Array.isArray(v) ? v : [v]).map((value) => ({ name, value })),
        ),
        body: Buffer.concat(chunks),
      };
    },
  };
}
