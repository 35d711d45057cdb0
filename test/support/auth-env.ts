/**
 * A full authentication environment for integration tests: the PSC simulator and a real eProxy on
 * free ports, both over TLS with the shared test PKI, two clients with API keys.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService, CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { createApiKey } from "../../src/auth/api-keys.ts";
import { parseConfig } from "../../src/config.ts";
import { createDeps, type Deps } from "../../src/deps.ts";
import { createLogger } from "../../src/log.ts";
import {
  type PscSimulator,
  type PscSimulatorOptions,
  startPscSimulator,
} from "../../src/sandbox/psc-simulator.ts";
import { startTeleserviceSimulator, type TeleserviceSimulator } from "../../src/sandbox/teleservices.ts";
import { type EproxyServer, startServer } from "../../src/server.ts";
import { freePort } from "./cli.ts";
import { expectDocumentedAnswer } from "./openapi.ts";
import { testPki } from "./server.ts";

/** The backend redirect URI registered for lps-demo. */
export const BACKEND_REDIRECT = "https://backend.example/psc/callback";
/** The doctor of the simulator. */
export const DOCTOR = "899700218896";
/** The pharmacist of the simulator. */
export const PHARMACIST = "899700366240";
/** The nurse of the simulator. */
export const NURSE = "899700412375";

/** A running environment. */
export interface AuthEnv {
  psc: PscSimulator;
  tele: TeleserviceSimulator;
  server: EproxyServer;
  deps: Deps;
  url: string;
  ca: string;
  keys: Record<"lps-demo" | "lps-other", string>;
  /** Environment holding the encryption key (for a CLI run against the same stores). */
  secretEnv: Record<string, string>;
  /** AuthService client authenticated with a client's API key. */
  auth(
    clientId?: "lps-demo" | "lps-other",
    protocol?: "grpc" | "connect",
    baseUrl?: string,
  ): Client<typeof AuthService>;
  /** AuthService client authenticated with any API key. */
  authKey(apiKey: string): Client<typeof AuthService>;
  /** A gRPC client of any service of eProxy, authenticated with a client's API key. */
  grpc<S extends DescService>(service: S, clientId?: "lps-demo" | "lps-other"): Client<S>;
  /** Starts another eProxy with the same configuration and stores (a replica); returns its URL. */
  replica(): Promise<string>;
  /** Like replica(), with a way to stop that replica alone. */
  startReplica(): Promise<{ url: string; close(): Promise<void> }>;
  /** A raw HTTPS request (HTTP/1.1) to eProxy, curl-style. */
  http(
    method: string,
    path: string,
    init?: { headers?: Record<string, string>; body?: unknown; baseUrl?: string },
  ): Promise<{
    status: number;
    headers: Record<string, string | string[] | undefined>;
    body: string;
    json(): any;
  }>;
  close(): Promise<void>;
}

/** Signs a professional in with CIBA through `auth` and returns the session token (throws unless approved). */
export async function cibaLogin(auth: Client<typeof AuthService>, nationalId: string): Promise<string> {
  const started = await auth.startCiba({ nationalId });
  let last: { status: CibaStatus; session?: { sessionToken: string } } | undefined;
  for await (const m of auth.watchCiba({ authReqId: started.authReqId })) last = m;
  if (last?.status !== CibaStatus.APPROVED || !last.session?.sessionToken) {
    throw new Error(`CIBA login of ${nationalId} ended in status ${last?.status ?? "none"}`);
  }
  return last.session.sessionToken;
}

/** Starts the PSC simulator and eProxy. */
export async function startAuthEnv(
  opts: {
    psc?: Partial<PscSimulatorOptions>;
    sessions?: Record<string, number>;
    clientOverrides?: Record<string, unknown>;
    /** Extra or replaced teleservice entries (by name). */
    teleservices?: Array<Record<string, unknown>>;
    server?: Record<string, unknown>;
    /** Keep sessions in this Redis (encrypted with a random key) instead of memory. */
    redisUrl?: string;
    /** Keep traces (and registered clients) in this MongoDB-wire server (a fresh database). */
    mongoUrl?: string;
    /** Clients PSC knows besides lps-demo and lps-other (e.g. registered with `eproxy clients`). */
    extraPscClients?: string[];
    /** Extra `stores` keys (e.g. clientsRefreshSeconds). */
    stores?: Record<string, unknown>;
    /** Extra top-level configuration blocks (e.g. alerts). */
    extra?: Record<string, unknown>;
    /** Where eProxy's log lines go (at level info); silent unless given or EPROXY_TEST_LOG is set. */
    logDestination?: NodeJS.WritableStream;
  } = {},
): Promise<AuthEnv> {
  const pki = testPki();
  const port = await freePort();
  const publicBaseUrl = `https://localhost:${port}`;
  const ids = ["lps-demo", "lps-other"] as const;
  const psc = await startPscSimulator({
    port: 0,
    tls: {
      cert: readFileSync(pki.serverCertFile, "utf8"),
      key: readFileSync(pki.serverKeyFile, "utf8"),
      ca: pki.ca,
    },
    clients: [...ids, ...(opts.extraPscClients ?? [])].map((id) => ({
      id,
      redirectUris: [`${publicBaseUrl}/oauth2/codeflow/${id}/callback`],
    })),
    autoApproveMs: 200,
    cibaIntervalSeconds: 1,
    introspectionClients: [{ id: "teleservice-as", secret: "sim-secret" }],
    ...opts.psc,
  });
  const serverTls = {
    cert: readFileSync(pki.serverCertFile, "utf8"),
    key: readFileSync(pki.serverKeyFile, "utf8"),
    ca: pki.ca,
  };
  const tele = await startTeleserviceSimulator({
    port: 0,
    tls: serverTls,
    psc: {
      introspectionEndpoint: `${psc.issuer}/protocol/openid-connect/token/introspect`,
      clientId: "teleservice-as",
      clientSecret: "sim-secret",
      ca: pki.ca,
    },
  });
  const teleservices: Array<Record<string, unknown>> = [
    {
      name: "insi",
      upstreamUrl: `${tele.url}/insi`,
      caFile: pki.caFile,
      tokenExchange: { endpoint: tele.tokenEndpoint, scope: "insi" },
    },
    {
      name: "dmp",
      upstreamUrl: `${tele.url}/dmp`,
      caFile: pki.caFile,
      tokenExchange: { endpoint: tele.tokenEndpoint, scope: "dmp" },
      maxBodyBytes: 80 * 1024 * 1024,
    },
    { name: "echo", upstreamUrl: `${tele.url}/mtls-only`, caFile: pki.caFile },
  ];
  for (const t of opts.teleservices ?? []) {
    const i = teleservices.findIndex((x) => x.name === t.name);
    if (i >= 0) teleservices[i] = { ...teleservices[i], ...t };
    else teleservices.push(t);
  }
  const apiKeys = { "lps-demo": createApiKey(), "lps-other": createApiKey() };
  const config = parseConfig(
    {
      server: {
        listenAddress: "127.0.0.1",
        port,
        publicBaseUrl,
        tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCaFile: pki.caFile },
        shutdownGraceMs: 1_000,
        ...opts.server,
      },
      psc: { discoveryUrl: psc.discoveryUrl, caFile: pki.caFile },
      teleservices,
      clients: ids.map((id) => ({
        id,
        ...pki.client(id),
        apiKeyHashes: [apiKeys[id].hash],
        redirectUris: [BACKEND_REDIRECT],
        allowedServices: id === "lps-demo" ? teleservices.map((t) => t.name) : ["insi"],
        ...(opts.clientOverrides ?? {}),
      })),
      ...(opts.sessions ? { sessions: opts.sessions } : {}),
      traces: (() => {
        const dir = mkdtempSync(path.join(tmpdir(), "eproxy-traces-"));
        return { spoolFile: path.join(dir, "spool.jsonl"), file: path.join(dir, "traces.jsonl") };
      })(),
      stores: {
        ...(opts.redisUrl
          ? {
              sessions: {
                kind: "redis",
                url: opts.redisUrl,
                keyPrefix: `t${randomBytes(4).toString("hex")}:`,
              },
            }
          : {}),
        ...(opts.redisUrl || opts.mongoUrl
          ? { encryption: { keys: [{ id: "k1", env: "EPROXY_TEST_KEY_K1" }], activeKeyId: "k1" } }
          : {}),
        ...(opts.mongoUrl ? { mongodbUrl: `${opts.mongoUrl}eproxy_${randomBytes(4).toString("hex")}` } : {}),
        ...opts.stores,
      },
      ...opts.extra,
      log: { level: opts.logDestination ? "info" : (process.env.EPROXY_TEST_LOG ?? "silent") },
    },
    {},
  );
  const env = { EPROXY_TEST_KEY_K1: randomBytes(32).toString("base64") };
  const deps = await createDeps(config, createLogger(config.log.level, opts.logDestination), { env });
  const server = await startServer(deps);
  const replicas: EproxyServer[] = [];
  const url = `https://localhost:${server.port}`;
  const keys = { "lps-demo": apiKeys["lps-demo"].key, "lps-other": apiKeys["lps-other"].key };
  const withKey =
    (key: string): Interceptor =>
    (next) =>
    (req) => {
      req.header.set("x-eproxy-api-key", key);
      return next(req);
    };
  return {
    psc,
    tele,
    server,
    deps,
    url,
    ca: pki.ca,
    keys,
    secretEnv: env,
    auth(clientId = "lps-demo", protocol = "grpc", baseUrl = url) {
      const interceptors = [withKey(keys[clientId])];
      const transport =
        protocol === "grpc"
          ? createGrpcTransport({ baseUrl, nodeOptions: { ca: pki.ca }, interceptors })
          : createConnectTransport({
              baseUrl,
              httpVersion: "1.1",
              nodeOptions: { ca: pki.ca },
              interceptors,
            });
      return createClient(AuthService, transport);
    },
    authKey(apiKey) {
      const transport = createGrpcTransport({
        baseUrl: url,
        nodeOptions: { ca: pki.ca },
        interceptors: [withKey(apiKey)],
      });
      return createClient(AuthService, transport);
    },
    grpc(service, clientId = "lps-demo") {
      const interceptors = [withKey(keys[clientId])];
      return createClient(
        service,
        createGrpcTransport({ baseUrl: url, nodeOptions: { ca: pki.ca }, interceptors }),
      );
    },
    async startReplica() {
      const cfg = parseConfig(
        { ...structuredClone(config), server: { ...structuredClone(config.server), port: 0 } },
        {},
      );
      const d = await createDeps(cfg, createLogger(cfg.log.level), { env });
      const s = await startServer(d);
      return { url: `https://localhost:${s.port}`, close: () => s.close() };
    },
    async replica() {
      const cfg = parseConfig(
        { ...structuredClone(config), server: { ...structuredClone(config.server), port: 0 } },
        {},
      );
      const d = await createDeps(cfg, createLogger(cfg.log.level), { env });
      const s = await startServer(d);
      replicas.push(s);
      return `https://localhost:${s.port}`;
    },
    http(method, path, init = {}) {
      return new Promise((resolve, reject) => {
        const body =
          init.body === undefined
            ? undefined
            : typeof init.body === "string"
              ? init.body
              : JSON.stringify(init.body);
        const req = https.request(
          `${init.baseUrl ?? url}${path}`,
          {
            method,
            ca: pki.ca,
            agent: false,
            headers: {
              ...(body !== undefined ? { "content-type": "application/json" } : {}),
              ...init.headers,
            },
          },
          (res) => {
            let text = "";
            res.on("data", (c: Buffer) => {
              text += c;
            });
            res.on("end", () => {
              const answer = { status: res.statusCode ?? 0, headers: res.headers, body: text };
              try {
                // Every REST answer of the integration tests must be what the OpenAPI document says.
                expectDocumentedAnswer(method, path, answer);
              } catch (err) {
                reject(err);
                return;
              }
              resolve({ ...answer, json: () => JSON.parse(text) });
            });
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    },
    async close() {
      for (const r of replicas) await r.close();
      await server.close();
      await psc.close();
      await tele.close();
    },
  };
}
