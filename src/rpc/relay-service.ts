/**
 * Connect implementation of eproxy.v1.RelayService: the same relay as `/send`, with the body in
 * the message (bounded by the server's message size limit).
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import type { ClientDirectory } from "../auth/callers.ts";
import { EproxyError } from "../errors.ts";
import { sessionTokenOf } from "../http/credentials.ts";
import type { HeaderMap } from "../relay/ports.ts";
import type { Relay } from "../relay/relay.ts";
import { callerOf } from "./caller.ts";

/** What RelayService uses. */
export interface RelayServiceDeps {
  clients: ClientDirectory;
  relay: Pick<Relay, "forward">;
  /** Largest message, both ways (the answer is one message). */
  maxMessageBytes: number;
}

/** Creates the RelayService implementation. */
export function createRelayService(deps: RelayServiceDeps): ServiceImpl<typeof RelayService> {
  const max = deps.maxMessageBytes;
  return {
    async forwardSoap(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
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
        body: single(req.body),
        signal: ctx.signal,
        maxAnswerBytes: max,
        tooLargeHint: "use POST /send for large documents",
      });
      const chunks: Buffer[] = [];
      for await (const c of out.body) chunks.push(c);
      const ct = out.headers["content-type"];
      const answerHeaders: Array<{ name: string; value: string }> = [];
      for (const name in out.headers) {
        const v = out.headers[name];
        if (Array.isArray(v)) for (const value of v) answerHeaders.push({ name, value });
        else if (v !== undefined) answerHeaders.push({ name, value: v });
      }
      return {
        statusCode: out.status,
        contentType: Array.isArray(ct) ? (ct[0] ?? "") : (ct ?? ""),
        headers: answerHeaders,
        // A one-chunk answer (most) is not copied: it is written out before the next call.
        body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
      };
    },
  };
}

/** A body of one chunk, as a plain iterator (no async generator on the relay path: hot-path-shape.test.ts). */
function single(chunk: Uint8Array): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      let sent = false;
      return {
        async next() {
          if (sent) return { done: true, value: undefined };
          sent = true;
          return { done: false, value: chunk };
        },
        async return() {
          sent = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
}
