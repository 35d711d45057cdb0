/**
 * The standard gRPC health service (`grpc.health.v1.Health`), for grpc-health-probe, Kubernetes'
 * gRPC probes and load balancers: `SERVING` while `/readyz` would answer 200, `NOT_SERVING` when
 * a critical dependency is down or the process is draining. The empty service name and every
 * eProxy service share that status; other names are unknown.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type Health as HealthService,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/grpc/health/v1/health_pb.ts";
import type { Health } from "../health.ts";

/** Creates the implementation; `services` are the names it answers for besides "". */
export function createHealthService(
  health: Pick<Health, "evaluate" | "current" | "onChange">,
  services: readonly string[],
  /** Aborted when the server drains: open Watch streams then end with `unavailable`. */
  shutdown: AbortSignal,
): ServiceImpl<typeof HealthService> {
  const known = new Set(["", ...services]);
  const statusOf = (ready: boolean) => (ready ? Status.SERVING : Status.NOT_SERVING);
  return {
    async check(req) {
      if (!known.has(req.service)) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return { status: statusOf((await health.evaluate()).ready) };
    },
    async list() {
      const status = statusOf((await health.evaluate()).ready);
      return { statuses: Object.fromEntries([...known].map((s) => [s, { status }])) };
    },
    async *watch(req, ctx) {
      if (!known.has(req.service)) {
        yield { status: Status.SERVICE_UNKNOWN };
        return;
      }
      const queue: boolean[] = [];
      let wake: (() => void) | undefined;
      const off = health.onChange((r) => {
        queue.push(r.ready);
        wake?.();
      });
      const stop = () => wake?.();
      shutdown.addEventListener("abort", stop);
      ctx.signal.addEventListener("abort", stop);
      try {
        let sent = (await health.evaluate()).ready;
        yield { status: statusOf(sent) };
        for (;;) {
          while (queue.length > 0) {
            const ready = queue.shift() as boolean;
            if (ready !== sent) {
              sent = ready;
              yield { status: statusOf(ready) };
            }
          }
          if (ctx.signal.aborted) return;
          // Connect's retry signal: the client reconnects to another replica.
          if (shutdown.aborted) throw new ConnectError("server is shutting down", Code.Unavailable);
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      } finally {
        off();
        shutdown.removeEventListener("abort", stop);
        ctx.signal.removeEventListener("abort", stop);
      }
    },
  };
}
