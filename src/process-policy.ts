/**
 * What `eproxy serve` does with a failure nothing handled. An unhandled promise rejection is a bug
 * in one operation (a request, a background task): it is logged as an error, with the request id
 * when the rejection happened inside a request, and the process keeps serving — the other requests
 * and the trace writer are unaffected. An uncaught exception leaves the process in an unknown state
 * (a callback thrown half-way): it is logged as fatal, the log is written out, and the process exits
 * with status 1 on purpose, for its supervisor (the `server.workers` primary, systemd, Kubernetes)
 * to start a clean one. Traces still queued in memory are lost then, as on any crash; traces in the
 * spool are replayed by the next process.
 */
import type { Logger } from "pino";

/** Installs the policy in this process; `beforeExit` writes the buffered log lines (bounded). */
export function installProcessPolicy(log: Logger, beforeExit: () => Promise<void>): void {
  process.on("unhandledRejection", (reason) => {
    log.error({ err: reason }, "unhandled promise rejection (a bug): logged, serving on");
  });
  let exiting = false;
  process.on("uncaughtException", (err, origin) => {
    if (exiting) return;
    exiting = true;
    log.fatal({ err, origin }, "uncaught exception: exiting (state unknown), the supervisor restarts eProxy");
    // Bounded: a stalled log destination must not keep a broken process alive.
    const timer = setTimeout(() => process.exit(1), 3_000);
    timer.unref();
    beforeExit().finally(() => process.exit(1));
  });
}
