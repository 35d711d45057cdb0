/**
 * Connect implementation of eproxy.v1.TraceService.
 */
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { TraceService } from "../../gen/eproxy/v1/trace_pb.ts";
import type { ClientDirectory } from "../auth/callers.ts";
import type { Config } from "../config.ts";
import { listTraces, verifyRecord } from "../trace/query.ts";
import type { TraceStore } from "../trace/traces.ts";
import { callerOf } from "./caller.ts";

/** What TraceService uses. */
export interface TraceServiceDeps {
  clients: ClientDirectory;
  traceStore: TraceStore;
  config: { traces: Pick<Config["traces"], "auditors"> };
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
          writerId: t.writerId ?? "",
          seq: BigInt(t.seq ?? 0),
          prevHash: t.prevHash ?? "",
          hash: t.hash ?? "",
        })),
      };
    },
    async verifyTraces(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      const r = await verifyRecord(deps.traceStore, {
        clientId: caller.id,
        auditors: deps.config.traces.auditors,
        ...(req.startTime ? { start: timestampDate(req.startTime).getTime() } : {}),
        ...(req.endTime ? { end: timestampDate(req.endTime).getTime() } : {}),
      });
      return {
        clean: r.clean,
        traces: BigInt(r.traces),
        chains: r.chains,
        unchained: BigInt(r.unchained),
        findings: r.problems.map((p) => ({
          kind: p.kind,
          writerId: p.writerId,
          seq: BigInt(p.seq),
          id: p.id ?? "",
          count: BigInt(p.count ?? 0),
          afterId: p.afterId ?? "",
          beforeId: p.beforeId ?? "",
          detail: p.detail,
        })),
      };
    },
  };
}
