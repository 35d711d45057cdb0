/**
 * Builds the telemetry the configuration asks for: prom-client metrics when the admin listener is
 * configured, OpenTelemetry tracing when an OTLP endpoint is. Each adapter is imported only when
 * used, so an eProxy with neither loads neither library and runs the no-op port.
 */
import cluster from "node:cluster";
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { noopMetrics, noopTracing, type Telemetry } from "../observe/telemetry.ts";
import type { Scrape } from "./prom-metrics.ts";

/** Telemetry plus what the admin listener serves. */
export interface TelemetrySetup {
  telemetry: Telemetry;
  /** Renders this process's metrics; undefined when metrics are off. */
  scrape?: () => Promise<Scrape>;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

/** Creates metrics and tracing from the `admin` and `tracing` blocks of the configuration. */
export async function createTelemetry(config: Readonly<Config>, log: Logger): Promise<TelemetrySetup> {
  let metrics = noopMetrics;
  let scrape: TelemetrySetup["scrape"];
  if (config.admin.port !== undefined) {
    const { createPromMetrics, shareWithPrimary } = await import("./prom-metrics.ts");
    const prom = createPromMetrics();
    metrics = prom.metrics;
    scrape = prom.scrape;
    // With server.workers, the primary serves /metrics and asks each worker for its registry.
    if (cluster.isWorker) shareWithPrimary(prom.registry);
  }
  let tracing = noopTracing;
  if (config.tracing) {
    const { createOtelTracing } = await import("./otel-tracing.ts");
    tracing = createOtelTracing(config.tracing, log, packageVersion());
  }
  return { telemetry: { metrics, tracing }, ...(scrape ? { scrape } : {}) };
}
