/**
 * The composition root: builds every long-lived client once from the configuration. No module-level
 * singletons: everything a service needs arrives through `Deps`.
 */
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import { type Ciba, createCiba } from "./auth/ciba.ts";
import { type ClientRegistry, type ClientSource, createClientRegistry } from "./auth/clients.ts";
import { type CodeFlow, createCodeFlow } from "./auth/code-flow.ts";
import { createMisuseGuard } from "./auth/misuse.ts";
import type { PscGateway } from "./auth/psc-gateway.ts";
import { createSessions, type Sessions } from "./auth/sessions.ts";
import type { AuthStore } from "./auth/store.ts";
import type { Config } from "./config.ts";
import { createHealth, type Health } from "./health.ts";
import { fileIdentities } from "./infra/client-tls.ts";
import { deriveKey, type KeyRing, loadKeyRing } from "./infra/key-ring.ts";
import { createMemoryStore } from "./infra/memory-store.ts";
import { createMemoryTraceStore } from "./infra/memory-traces.ts";
import { createMongoClientSource } from "./infra/mongo-clients.ts";
import { createMongoTraceStore } from "./infra/mongo-traces.ts";
import { createPscGateway } from "./infra/psc-openid.ts";
import { createReclaimer } from "./infra/reclaim.ts";
import { createRedisStore } from "./infra/redis-store.ts";
import { createTelemetry } from "./infra/telemetry.ts";
import { createOpenidTokenExchange } from "./infra/token-exchange-openid.ts";
import { createUndiciUpstream } from "./infra/upstream-undici.ts";
import {
  instrumentPsc,
  instrumentStore,
  instrumentTokenExchange,
  instrumentUpstream,
  observeTraces,
} from "./observe/instrument.ts";
import type { Telemetry } from "./observe/telemetry.ts";
import { createApiTokens } from "./relay/api-tokens.ts";
import type { TokenExchange, Upstream } from "./relay/ports.ts";
import { createRelay, type Relay } from "./relay/relay.ts";
import { readAfterWrite } from "./trace/query.ts";
import type { TraceStore } from "./trace/traces.ts";
import { createTraceWriter, type TraceWriter } from "./trace/writer.ts";

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
  /** The clients: configuration file plus MongoDB registry (configuration wins). */
  clients: ClientRegistry;
  /** Session, code-flow and one-time-code storage. */
  store: AuthStore;
  /** Pro Santé Connect. */
  psc: PscGateway;
  /** Sessions. */
  sessions: Sessions;
  /** CIBA requests and their pollers. */
  ciba: Ciba;
  /** Authorization code flow. */
  codeFlow: CodeFlow;
  /** The SOAP relay. */
  relay: Relay;
  /** Access traces (writer), and the store they are queried from. */
  traces: TraceWriter;
  traceStore: TraceStore;
  /** Readiness (`/readyz`, grpc.health.v1), with PSC checked in the background. */
  health: Health;
  /** Metrics and tracing (no-ops unless `admin.port` / `tracing` are configured). */
  telemetry: Telemetry;
  /** Renders the metrics for the admin listener; undefined when metrics are off. */
  scrapeMetrics?: () => Promise<{ contentType: string; body: string }>;
  /** Closes every store and pool (called once on shutdown). */
  close(): Promise<void>;
}

/** Parts a caller (tests, sandbox) may supply instead of the configured ones. */
export interface DepsOverrides {
  store?: AuthStore;
  psc?: PscGateway;
  upstream?: Upstream;
  tokenExchange?: TokenExchange;
  /** Environment for secrets referenced by name (encryption keys). */
  env?: NodeJS.ProcessEnv;
  traceStore?: TraceStore;
  /** Where registered clients are read from (default: MongoDB when configured). */
  clientSource?: ClientSource;
  /** Metrics and tracing (default: from the `admin` and `tracing` configuration). */
  telemetry?: Telemetry;
}

/** Builds the dependencies from a validated configuration. */
export async function createDeps(
  config: Readonly<Config>,
  log: Logger,
  overrides: DepsOverrides = {},
): Promise<Deps> {
  const tls: ServerTls = {
    cert: readFileSync(config.server.tls.certFile, "utf8"),
    key: readFileSync(config.server.tls.keyFile, "utf8"),
    ...(config.server.tls.clientCaFile
      ? { clientCa: readFileSync(config.server.tls.clientCaFile, "utf8") }
      : {}),
  };
  if (config.stores.sessions.kind === "memory") {
    log.warn("sessions are kept in process memory: fine for one instance and the sandbox, not for replicas");
  }
  const observed = overrides.telemetry
    ? { telemetry: overrides.telemetry }
    : await createTelemetry(config, log);
  const { telemetry } = observed;
  const measuring = observed.scrape !== undefined || overrides.telemetry !== undefined;
  const instrumenting = measuring || telemetry.tracing.enabled;
  const sessionsCfg = config.stores.sessions;
  const keyRing: KeyRing | undefined = config.stores.encryption
    ? loadKeyRing(config.stores.encryption, overrides.env ?? {})
    : undefined;
  const rawStore =
    overrides.store ??
    (sessionsCfg.kind === "redis" && keyRing
      ? createRedisStore(sessionsCfg, keyRing, log)
      : createMemoryStore());
  const store = instrumenting ? instrumentStore(rawStore, telemetry, "sessions") : rawStore;
  const clientSource: ClientSource | undefined =
    overrides.clientSource ??
    (config.stores.mongodbUrl ? createMongoClientSource(config.stores.mongodbUrl, { log }) : undefined);
  const clients = await createClientRegistry({
    config,
    log,
    identities: fileIdentities,
    ...(clientSource ? { source: clientSource } : {}),
    ...(keyRing ? { keyRing } : {}),
  });
  const rawPsc = overrides.psc ?? createPscGateway(config, clients, log);
  const psc = instrumenting ? instrumentPsc(rawPsc, telemetry) : rawPsc;
  const retentionMs = config.traces.retentionDays * 86_400_000;
  mkdirSync(path.dirname(config.traces.spoolFile), { recursive: true });
  let traceStore = overrides.traceStore;
  if (!traceStore && config.stores.mongodbUrl) {
    traceStore = createMongoTraceStore(config.stores.mongodbUrl, { retentionMs });
  } else if (!traceStore) {
    mkdirSync(path.dirname(config.traces.file), { recursive: true });
    traceStore = createMemoryTraceStore({ file: config.traces.file, retentionMs });
    log.warn({ file: config.traces.file }, "no MongoDB: traces kept in memory and in a JSON-lines file");
  }
  if (instrumenting) traceStore = instrumentStore(traceStore, telemetry, "traces");
  const writer = createTraceWriter(traceStore, log, {
    spoolFile: config.traces.spoolFile,
    spoolMaxBytes: config.traces.spoolMaxBytes,
    enrich: (e) => {
      const dn = e.clientId && !e.certificateDn ? clients.identity(e.clientId)?.subjectDn : undefined;
      // Set in place: every event has the field already (no copy per trace).
      if (dn) e.certificateDn = dn;
      return e;
    },
  });
  const traces = measuring ? observeTraces(writer, telemetry) : writer;
  // Session tokens carry a MAC under keys that outlive the process: the store's key ring when there
  // is one (shared by replicas), else the listener's private key (one instance).
  const tokenKeys = keyRing?.derive("eproxy session token mac") ?? {
    activeKeyId: "tls",
    keys: new Map([["tls", deriveKey(tls.key, "eproxy session token mac")]]),
  };
  const sessions = createSessions({
    config,
    clients,
    store,
    psc,
    log,
    traces,
    tokenKeys,
    metrics: telemetry.metrics,
  });
  const misuse = createMisuseGuard({ config, store, traces, log });
  const ciba = createCiba({ config, clients, psc, sessions, store, misuse, log, traces });
  const codeFlow = createCodeFlow({ config, clients, store, psc, sessions, log, traces });
  const undici = createUndiciUpstream(clients, log);
  const rawUpstream = overrides.upstream ?? undici;
  const upstream = instrumenting ? instrumentUpstream(rawUpstream, telemetry) : rawUpstream;
  const rawExchange =
    overrides.tokenExchange ??
    createOpenidTokenExchange({
      dispatcherFor: undici.dispatcherFor,
      log,
      tlsFor: (clientId, t) => {
        const id = clients.identity(clientId);
        return id
          ? { ...id.tls, ...(t.caFile ? { ca: readFileSync(t.caFile, "utf8") } : {}), minVersion: "TLSv1.2" }
          : undefined;
      },
    });
  const tokenExchange = instrumenting ? instrumentTokenExchange(rawExchange, telemetry) : rawExchange;
  const apiTokens = createApiTokens({
    sessions,
    store,
    tokenExchange,
    traces,
    log,
    metrics: telemetry.metrics,
  });
  const relay = createRelay({
    config,
    sessions,
    apiTokens,
    upstream,
    misuse,
    traces,
    thumbprintOf: (clientId) => clients.identity(clientId)?.thumbprint ?? "",
    log,
    reclaim: createReclaimer(config.server.reclaimEveryBytes),
  });
  telemetry.metrics.observe({
    traceWriter: () => writer.stats(),
    cibaPending: () => ciba.pending(),
    liveSessions: async () => store.countSessions?.(),
  });
  const health = createHealth([
    { name: "sessionStore", impact: "critical", check: async () => store.ping() },
    {
      name: "psc",
      impact: "degrading",
      background: true,
      check: async () => {
        // Refreshes paused by the breaker, or discovery unreachable: logins and refreshes fail.
        if (sessions.pscPaused()) return "unavailable";
        await psc.reachable();
      },
    },
    // Sessions shared by replicas, traces not: each replica answers trace queries with its own share.
    ...(config.stores.sessions.kind !== "memory" && !config.stores.mongodbUrl
      ? [{ name: "traceRecord", impact: "degrading" as const, check: async () => "degraded" as const }]
      : []),
    {
      name: "traces",
      impact: "degrading",
      // Events are spooled to disk (MongoDB failing), held in memory (the spool failing too), or were
      // dropped: say it.
      check: async () => {
        const s = writer.stats();
        return s.spooledBytes > 0 || s.dropped > 0 || s.held > 0 || s.spoolFailing ? "degraded" : "ok";
      },
    },
  ]);
  return {
    config,
    log,
    tls,
    clients,
    store,
    psc,
    sessions,
    ciba,
    codeFlow,
    relay,
    traces,
    traceStore: readAfterWrite(traceStore, writer),
    health,
    telemetry,
    ...(observed.scrape ? { scrapeMetrics: observed.scrape } : {}),
    async close() {
      health.close();
      await ciba.close();
      clients.close();
      await psc.close();
      await upstream.close();
      if (rawUpstream !== undici) await undici.close();
      await traces.close();
      await store.close();
      await clientSource?.close();
      await telemetry.tracing.shutdown();
    },
  };
}
