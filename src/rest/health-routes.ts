/**
 * Liveness and readiness probes. `/healthz` answers as long as the process serves requests;
 * `/readyz` checks every dependency (stores, PSC discovery) with a short timeout.
 */
import type { ReadinessCheck } from "../deps.ts";
import { sendJson } from "./respond.ts";
import type { Route } from "./router.ts";

/** Routes for `GET /healthz` and `GET /readyz`. */
export function createHealthRoutes(checks: readonly ReadinessCheck[], timeoutMs = 2_000): Route[] {
  return [
    { method: "GET", pattern: "/healthz", handler: ({ res }) => sendJson(res, 200, { status: "ok" }) },
    {
      method: "GET",
      pattern: "/readyz",
      handler: async ({ res }) => {
        const results = await Promise.all(
          checks.map(async (c) => {
            try {
              await Promise.race([
                c.check(),
                new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), timeoutMs).unref()),
              ]);
              return [c.name, "ok"] as const;
            } catch {
              // The cause is not shown: readiness is public and must not leak topology.
              return [c.name, "unavailable"] as const;
            }
          }),
        );
        const ok = results.every(([, s]) => s === "ok");
        sendJson(res, ok ? 200 : 503, {
          status: ok ? "ok" : "unavailable",
          checks: Object.fromEntries(results),
        });
      },
    },
  ];
}
