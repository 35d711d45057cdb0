/**
 * Connect implementation of eproxy.v1.TraceService.
 */
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { TraceService } from "../../gen/eproxy/v1/trace_pb.ts";
import type { ClientDirectory } from "../auth/callers.ts";
import { listTraces } from "../trace/query.ts";
import type { TraceStore } from "../trace/traces.ts";
import { callerOf } from "./caller.ts";

/** What TraceService uses. */
export interface TraceServiceDeps {
  clients: ClientDirectory;
  traceStore: TraceStore;
}

/** Creates the TraceService implementation. */
export function createTraceService(deps: TraceServiceDeps): ServiceImpl<typeof TraceService> {
  return {
    async listTraces(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      const { traces, nextPageToken } = await listTraces(deps.traceStore, {
        clientId: caller.id,
        ...(req.startTime ? { start: timestampDate(req.startTime).getTime() } : {}),
        ...(req.endTime ? { end: timestampDate(req.endTime).getTime() } : {}),
        type: req.type,
        nationalId: req.nationalId,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return {
        nextPageToken,
        traces: traces.map((t) => ({
          id: t.id,
          type: t.type,
          time: timestampFromMs(t.at),
          clientId: t.clientId ?? "",
          nationalId: t.nationalId ?? "",
          callerIp: t.callerIp ?? "",
          sessionHash: t.sessionHash ?? "",
          sessionState: t.sessionState ?? "",
          certificateDn: t.certificateDn ?? "",
          correlationId: t.correlationId ?? "",
          requestId: t.requestId ?? "",
          service: t.service ?? "",
          method: t.method ?? "",
          path: t.path ?? "",
          soapAction: t.soapAction ?? "",
          upstreamStatus: t.upstreamStatus ?? 0,
          durationMs: t.durationMs ?? 0,
          bytesIn: BigInt(t.bytesIn ?? 0),
          bytesOut: BigInt(t.bytesOut ?? 0),
          outcome: t.outcome ?? "",
        })),
      };
    },
  };
}
