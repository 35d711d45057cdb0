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
  /**
   * `operator`: the configuration an operator writes for the agency's trust space (issue 25): three
   * teleservices, each with `tokenExchange: {endpoint, extraParams: {subject_issuer: psc}}`, every
   * `maxBodyBytes` ~101 MiB (MTOM), `maxConnectionsPerOrigin: 64`, `alerts.relaysPerSession: null`.
   * Default: the benchmark's own (two teleservices, scopes, insi at the default body limit).
   */
  shape?: "bench" | "operator";
}

/** The operator shape's body limit: 101 MiB, for 100 MiB MTOM uploads. */
export const OPERATOR_MAX_BODY_BYTES = 101 * 1024 * 1024;

/** Builds the configuration object (written as JSON, which YAML reads). */
export function benchConfig(i: BenchConfigInput): Record<string, unknown> {
  if (i.shape === "operator") return operatorConfig(i);
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

/** The operator's configuration (see `shape`): what issue 25 measured at 0.25–0.44 ms per call. */
function operatorConfig(i: BenchConfigInput): Record<string, unknown> {
  const tokenExchange = { endpoint: i.tele.tokenEndpoint, extraParams: { subject_issuer: "psc" } };
  const common = {
    caFile: i.pki.ca.certFile,
    tokenExchange,
    maxBodyBytes: Math.max(OPERATOR_MAX_BODY_BYTES, i.dmpMaxBodyBytes / 2 + 1024 * 1024),
    maxConnectionsPerOrigin: 64,
  };
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
        allowedServices: ["dmp", "insi", "mss"],
        exposePscTokens: true,
      },
    ],
    teleservices: [
      { name: "dmp", upstreamUrl: `${i.tele.url}/dmp`, ...common },
      { name: "insi", upstreamUrl: i.insiUrl ?? `${i.tele.url}/insi`, ...common },
      { name: "mss", upstreamUrl: `${i.tele.url}/mtls-only`, ...common },
    ],
    ...i.extra,
    alerts: { relaysPerSession: null },
    log: { level: i.logLevel },
  };
}
