/**
 * The eProxy configuration both benchmarks run: one client (`lps-bench`) allowed dmp and insi, the
 * teleservice simulator's token exchange, and the misuse limiter on with a ceiling the benchmark
 * never reaches (its cost is part of the figures).
 */
import type { DevPki, PemPair } from "../src/infra/dev-pki.ts";

/** What differs between the benchmarks. */
export interface BenchConfigInput {
  port: number;
  pki: DevPki;
  client: PemPair;
  apiKeyHash: string;
  pscDiscoveryUrl: string;
  /** The teleservice simulator: its base URL (dmp is `${url}/dmp`) and token endpoint. */
  tele: { url: string; tokenEndpoint: string };
  /** Where insi is relayed (default `${tele.url}/insi`). */
  insiUrl?: string;
  dmpMaxBodyBytes: number;
  relaysPerSessionMax: number;
  logLevel: string;
  /** Extra `server` keys (e.g. workers). */
  server?: Record<string, unknown>;
  /** Extra top-level keys (stores, traces). */
  extra?: Record<string, unknown>;
}

/** Builds the configuration object (written as JSON, which YAML reads). */
export function benchConfig(i: BenchConfigInput): Record<string, unknown> {
  return {
    server: {
      listenAddress: "127.0.0.1",
      port: i.port,
      tls: { certFile: i.pki.server.certFile, keyFile: i.pki.server.keyFile },
      ...i.server,
    },
    psc: { discoveryUrl: i.pscDiscoveryUrl, caFile: i.pki.ca.certFile },
    clients: [
      {
        id: "lps-bench",
        certFile: i.client.certFile,
        keyFile: i.client.keyFile,
        apiKeyHashes: [i.apiKeyHash],
        allowedServices: ["dmp", "insi"],
        exposePscTokens: true,
      },
    ],
    teleservices: [
      {
        name: "dmp",
        upstreamUrl: `${i.tele.url}/dmp`,
        caFile: i.pki.ca.certFile,
        tokenExchange: { endpoint: i.tele.tokenEndpoint, scope: "dmp" },
        maxBodyBytes: i.dmpMaxBodyBytes,
      },
      {
        name: "insi",
        upstreamUrl: i.insiUrl ?? `${i.tele.url}/insi`,
        caFile: i.pki.ca.certFile,
        tokenExchange: { endpoint: i.tele.tokenEndpoint, scope: "insi" },
      },
    ],
    ...i.extra,
    alerts: { relaysPerSession: { max: i.relaysPerSessionMax, windowSeconds: 60 } },
    log: { level: i.logLevel },
  };
}
