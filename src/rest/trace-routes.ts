/**
 * `GET /traces?start=&end=` (ISO 8601), the shape conformity tooling reads: a JSON array of the
 * caller's traces, oldest first; `pageSize`, `pageToken`, `type` and `nationalId` narrow it, and the
 * next page's token comes in `x-next-page-token`.
 */
import type { ClientDirectory } from "../auth/callers.ts";
import { listTraces } from "../trace/query.ts";
import type { TraceStore } from "../trace/traces.ts";
import { restCaller } from "./caller.ts";
import { sendJson } from "./respond.ts";
import type { Route } from "./router.ts";

/** What the trace route uses. */
export interface TraceRoutesDeps {
  clients: ClientDirectory;
  traceStore: TraceStore;
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
        const time = (name: string) => {
          const v = p.get(name);
          return v ? Date.parse(v) : undefined;
        };
        const start = time("start");
        const end = time("end");
        const type = p.get("type");
        const nationalId = p.get("nationalId");
        const token = p.get("pageToken");
        const { traces, nextPageToken } = await listTraces(deps.traceStore, {
          clientId: caller.id,
          ...(start !== undefined ? { start } : {}),
          ...(end !== undefined ? { end } : {}),
          ...(type ? { type } : {}),
          ...(nationalId ? { nationalId } : {}),
          pageSize: Number(p.get("pageSize") ?? 100),
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
  ];
}
