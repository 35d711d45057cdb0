/**
 * `GET /traces?start=&end=` (ISO 8601), the shape conformity tooling reads: a JSON array of the
 * caller's traces, oldest first; `pageSize`, `pageToken`, `type` and `nationalId` narrow it, and the
 * next page's token comes in `x-next-page-token`. `GET /traces/verify?start=&end=`: the trace record's
 * verification over a range, for the clients listed in `traces.auditors`.
 */
import type { ClientDirectory } from "../auth/callers.ts";
import type { Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import { listTraces, verifyRecord } from "../trace/query.ts";
import type { TraceStore, TraceType } from "../trace/traces.ts";
import { restCaller } from "./caller.ts";
import { sendJson } from "./respond.ts";
import type { Route } from "./router.ts";

/**
 * The trace types a query may name: the OpenAPI document's `TraceType` enum (a unit test keeps the
 * two equal), checked at compile time against the store's `TraceType`.
 */
export const TRACE_TYPES = [
  "CONNECT_SUCCESS",
  "CONNECT_REPLAY",
  "CONNECT_FAILURE",
  "REFRESH",
  "REFRESH_FAILURE",
  "EXCHANGE",
  "SEND",
  "DISCONNECT",
  "REJECTED",
  "FAILED",
  "ALERT",
] as const satisfies readonly TraceType[];
// Every TraceType is listed (a new type added to the store without its name here fails typecheck).
const everyType: Record<Exclude<TraceType, (typeof TRACE_TYPES)[number]>, never> = {};
void everyType;

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** `pageSize`: absent (100), or an integer from 1 to 1000 as the document says. */
function pageSizeOf(v: string | null): number {
  if (v === null) return 100;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 1000) {
    throw new EproxyError("INVALID_ARGUMENT", "pageSize must be an integer from 1 to 1000");
  }
  return n;
}

/** What the trace route uses. */
export interface TraceRoutesDeps {
  clients: ClientDirectory;
  traceStore: TraceStore;
  config: { traces: Pick<Config["traces"], "auditors"> };
}

/** The trace query route. */
export function createTraceRoutes(deps: TraceRoutesDeps): Route[] {
  return [
    {
      method: "GET",
      pattern: "/traces",
      handler: async ({ req, res, url }) => {
        const caller = restCaller(deps.clients, req);
        const p = url.searchParams;
        // RFC 3339 date-time as the document says (Date.parse alone takes "0" or "May 1").
        const time = (name: string) => {
          const v = p.get(name);
          return v ? (RFC3339.test(v) ? Date.parse(v) : Number.NaN) : undefined;
        };
        const start = time("start");
        const end = time("end");
        const type = p.get("type");
        if (type !== null && !(TRACE_TYPES as readonly string[]).includes(type)) {
          throw new EproxyError("INVALID_ARGUMENT", `type must be one of ${TRACE_TYPES.join(", ")}`);
        }
        const nationalId = p.get("nationalId");
        const token = p.get("pageToken");
        const { traces, nextPageToken } = await listTraces(deps.traceStore, {
          clientId: caller.id,
          ...(start !== undefined ? { start } : {}),
          ...(end !== undefined ? { end } : {}),
          ...(type ? { type } : {}),
          ...(nationalId ? { nationalId } : {}),
          pageSize: pageSizeOf(p.get("pageSize")),
          ...(token ? { pageToken: token } : {}),
        });
        sendJson(
          res,
          200,
          traces.map(({ at, ...rest }) => ({ ...rest, timestamp: new Date(at).toISOString() })),
          nextPageToken ? { "x-next-page-token": nextPageToken } : {},
        );
      },
    },
    {
      method: "GET",
      pattern: "/traces/verify",
      handler: async ({ req, res, url }) => {
        const caller = restCaller(deps.clients, req);
        const time = (name: string) => {
          const v = url.searchParams.get(name);
          return v ? (RFC3339.test(v) ? Date.parse(v) : Number.NaN) : undefined;
        };
        const start = time("start");
        const end = time("end");
        const r = await verifyRecord(deps.traceStore, {
          clientId: caller.id,
          auditors: deps.config.traces.auditors,
          ...(start !== undefined ? { start } : {}),
          ...(end !== undefined ? { end } : {}),
        });
        sendJson(res, 200, {
          ...r,
          start: new Date(r.start).toISOString(),
          end: new Date(r.end).toISOString(),
        });
      },
    },
  ];
}
