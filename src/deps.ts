/**
 * The composition root: builds every long-lived client once from the configuration. No module-level
 * singletons: everything a service needs arrives through `Deps`.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { Config } from "./config.ts";

/** A named probe used by `/readyz`. */
export interface ReadinessCheck {
  /** Name shown in the readiness answer. */
  name: string;
  /** Resolves when the dependency is reachable. */
  check(): Promise<void>;
}

/** TLS material of the HTTPS listener. */
export interface ServerTls {
  /** Server certificate chain, PEM. */
  cert: string;
  /** Server private key, PEM. */
  key: string;
  /** CA bundle for backends that authenticate with a client certificate. */
  clientCa?: string;
}

/** Everything the services need, built once. */
export interface Deps {
  /** Frozen configuration. */
  config: Readonly<Config>;
  /** Root logger. */
  log: Logger;
  /** TLS material of the listener. */
  tls: ServerTls;
  /** Probes for `/readyz`. */
  readiness: ReadinessCheck[];
  /** Closes every store and pool (called once on shutdown). */
  close(): Promise<void>;
}

/** Builds the dependencies from a validated configuration. */
export async function createDeps(config: Readonly<Config>, log: Logger): Promise<Deps> {
  const tls: ServerTls = {
    cert: readFileSync(config.server.tls.certFile, "utf8"),
    key: readFileSync(config.server.tls.keyFile, "utf8"),
    ...(config.server.tls.clientCaFile
      ? { clientCa: readFileSync(config.server.tls.clientCaFile, "utf8") }
      : {}),
  };
  const closers: Array<() => Promise<void>> = [];
  const readiness: ReadinessCheck[] = [];
  if (config.stores.sessions.kind === "memory") {
    log.warn("sessions are kept in process memory: fine for one instance and the sandbox, not for replicas");
  }
  return {
    config,
    log,
    tls,
    readiness,
    async close() {
      for (const c of closers.reverse()) await c();
    },
  };
}
