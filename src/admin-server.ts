/**
 * The admin listener: plain HTTP on its own address and port (loopback by default, never the public
 * listener), serving `GET /metrics` in the Prometheus text format. Kept apart so that metrics are
 * never reachable by the trust space's callers and a scrape never competes with their TLS sessions.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Config } from "./config.ts";

/** A running admin listener. */
export interface AdminServer {
  /** Bound port. */
  port: number;
  /** The metrics URL, e.g. `http://127.0.0.1:9464/metrics`. */
  metricsUrl: string;
  close(): Promise<void>;
}

/** Starts the admin listener; `scrape` renders the metrics at each request. */
export async function startAdminServer(opts: {
  listenAddress: string;
  port: number;
  log: Logger;
  scrape: () => Promise<{ contentType: string; body: string }>;
}): Promise<AdminServer> {
  const { log } = opts;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics") {
      res
        .writeHead(404, { "content-type": "text/plain" })
        .end("not found: the admin listener serves /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    opts.scrape().then(
      ({ contentType, body }) => {
        res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (err: unknown) => {
        log.error({ err }, "metrics scrape failed");
        res.writeHead(500, { "content-type": "text/plain" }).end("scrape failed\n");
      },
    );
  });
  // A scrape is small; a client that holds a socket open must not hold shutdown.
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.listenAddress, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.listenAddress.includes(":") ? `[${opts.listenAddress}]` : opts.listenAddress;
  const shown = opts.listenAddress === "0.0.0.0" || opts.listenAddress === "::" ? "localhost" : host;
  const metricsUrl = `http://${shown}:${port}/metrics`;
  log.info({ port, address: opts.listenAddress, metricsUrl }, "admin listener (metrics)");
  return {
    port,
    metricsUrl,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The admin listener of the `server.workers` primary: each scrape asks every worker for its
 * registry and sums them (prom-client's AggregatorRegistry); workers open no admin listener.
 */
export async function startClusterAdmin(config: Readonly<Config>, log: Logger): Promise<AdminServer> {
  const { clusterScrape } = await import("./infra/prom-metrics.ts");
  return startAdminServer({
    listenAddress: config.admin.listenAddress,
    port: config.admin.port ?? 0,
    log,
    scrape: clusterScrape(),
  });
}
