/**
 * Liveness and readiness probes. `/healthz` answers as long as the process serves requests;
 * `/readyz` answers the readiness (200 when ready, possibly `degraded`; 503 when a critical
 * dependency is down or the process is draining), with the state of each dependency.
 */
import type { Health } from "../health.ts";
import { sendJson } from "./respond.ts";
import type { Route } from "./router.ts";

/** Routes for `GET /healthz` and `GET /readyz`. */
export function createHealthRoutes(health: Pick<Health, "evaluate">): Route[] {
  return [
    { method: "GET", pattern: "/healthz", handler: ({ res }) => sendJson(res, 200, { status: "ok" }) },
    {
      method: "GET",
      pattern: "/readyz",
      handler: async ({ res }) => {
        const r = await health.evaluate();
        sendJson(res, r.ready ? 200 : 503, { status: r.status, checks: r.checks });
      },
    },
  ];
}
