/**
 * `eproxy sandbox`: everything a newcomer needs on one machine, with zero configuration — a
 * development PKI, the PSC simulator, the proxy on a fixed port, and how to call it. Never imported
 * by `serve`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { stringify as toYaml } from "yaml";
import { createApiKey } from "../auth/api-keys.ts";
import { createCibaStore } from "../auth/ciba-store.ts";
import { parseConfig } from "../config.ts";
import { createDeps } from "../deps.ts";
import { ensureDevPki } from "../infra/dev-pki.ts";
import { freePort } from "../infra/free-port.ts";
import { createMemoryStore } from "../infra/memory-store.ts";
import { createMemoryTraceStore } from "../infra/memory-traces.ts";
import { createLogger } from "../log.ts";
import { startServer } from "../server.ts";
import { sessionHashOf, type TraceEvent } from "../trace/traces.ts";
import { type SandboxConsole, startConsole } from "./console/console-server.ts";
import { tapTraceStore, trackSessions } from "./console/observe.ts";
import { PROFESSIONALS } from "./professionals.ts";
import { type PscSimulator, startPscSimulator } from "./psc-simulator.ts";
import { insiSearchRequest } from "./soap-samples.ts";
import { startTeleserviceSimulator, type TeleserviceSimulator } from "./teleservices.ts";

/** Client ids (certificate CNs) of the sandbox backends. */
export const SANDBOX_CLIENT_IDS = ["lps-demo", "lps-other"] as const;

/** Secret of the sandbox authorization server at the PSC simulator (sandbox only, never a real secret). */
const SANDBOX_AS_SECRET = "sandbox-only-introspection-secret";

/** Redirect URI registered for the sandbox backends (a local web app would listen there). */
export const SANDBOX_REDIRECT_URI = "https://localhost:3000/psc/callback";

/** Options of the sandbox. */
export interface SandboxOptions {
  /** Proxy port (8443 by default; 0 picks a free one). */
  port: number;
  /** PSC simulator port (proxy port + 1 by default). */
  pscPort?: number;
  /** Teleservice simulators port (proxy port + 2 by default). */
  teleservicesPort?: number;
  /** Where the development PKI lives. */
  certsDir: string;
  /** Where the instructions are printed. */
  out: NodeJS.WritableStream;
  /** Log level of the embedded proxy. */
  logLevel?: string;
  /** Delay before the PSC simulator approves a CIBA request (default 3000 ms). */
  approveAfterMs?: number;
  /**
   * Keep `serve`'s misuse limits (blocking). By default the sandbox relaxes them to alerts only,
   * so that a developer who denies a few pushes is not locked out for 15 minutes.
   */
  strictMisuseLimits?: boolean;
  /**
   * Trace types the sandbox drops instead of storing (e.g. `DISCONNECT`): a rehearsal of a proxy
   * that fails the conformity test's trace check. Never in `serve`.
   */
  withholdTraces?: readonly string[];
  /** Port of the sandbox console (proxy port + 4 by default); false: no console. */
  consolePort?: number | false;
}

/** The sandbox's misuse thresholds: `serve`'s defaults, alerting but never blocking. */
export const SANDBOX_RELAXED_ALERTS = {
  cibaFailures: { max: 5, windowSeconds: 900, block: false },
  relaysPerSession: { max: 600, windowSeconds: 60, block: false },
} as const;

/** Fails with one line naming the option to change when a port is taken (no stack trace). */
async function ensureFree(port: number, what: string, flag: string): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => {
      const why =
        err.code === "EADDRINUSE" ? "is already in use" : `cannot be used (${err.code ?? err.message})`;
      reject(
        new Error(`port ${port} (${what}) ${why}: stop what uses it, or choose another port with ${flag}`),
      );
    });
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve()));
  });
}

/** A running sandbox. */
export interface Sandbox {
  /** URL of the proxy. */
  url: string;
  /** The PSC simulator. */
  psc: PscSimulator;
  /** The teleservice simulators. */
  teleservices: TeleserviceSimulator;
  /** The sandbox console, unless turned off. */
  console?: SandboxConsole;
  /** Stops everything. */
  close(): Promise<void>;
}

function rel(file: string): string {
  const r = path.relative(process.cwd(), file);
  return r.startsWith("..") ? file : r;
}

/** The sandbox API keys (one per client), created once next to the PKI. */
function sandboxApiKeys(dir: string): Record<string, { key: string; hash: string }> {
  const file = path.join(dir, "sandbox-api-keys.json");
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8"));
  const keys = Object.fromEntries(SANDBOX_CLIENT_IDS.map((id) => [id, createApiKey()]));
  writeFileSync(file, JSON.stringify(keys, null, 2), { mode: 0o600 });
  return keys;
}

/** The sandbox's trace store, dropping the withheld types (a rehearsal of a failing conformity test). */
function withholding(
  store: ReturnType<typeof createMemoryTraceStore>,
  types: ReadonlySet<string>,
  log: { warn(msg: string): void },
): ReturnType<typeof createMemoryTraceStore> {
  if (types.size === 0) return store;
  log.warn(`SANDBOX: traces of type ${[...types].join(", ")} are withheld (dropped, never stored)`);
  return { ...store, insertMany: (events) => store.insertMany(events.filter((e) => !types.has(e.type))) };
}

/** Starts the sandbox and prints how to call it. */
export async function runSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const pki = await ensureDevPki(opts.certsDir, SANDBOX_CLIENT_IDS);
  const keys = sandboxApiKeys(opts.certsDir);
  const port = opts.port === 0 ? await freePort() : opts.port;
  const pscPort = opts.pscPort ?? (opts.port === 0 ? 0 : port + 1);
  const teleservicesPort = opts.teleservicesPort ?? (opts.port === 0 ? 0 : port + 2);
  const adminPort = opts.port === 0 ? 0 : port + 3;
  await ensureFree(port, "proxy", "--port N");
  await ensureFree(
    pscPort,
    "PSC simulator",
    opts.pscPort === undefined ? "--psc-port N (or --port N)" : "--psc-port N",
  );
  await ensureFree(
    teleservicesPort,
    "teleservice simulators",
    opts.teleservicesPort === undefined ? "--teleservices-port N (or --port N)" : "--teleservices-port N",
  );
  await ensureFree(adminPort, "metrics, proxy port + 3", "--port N");
  const consolePort =
    opts.consolePort === false ? false : (opts.consolePort ?? (opts.port === 0 ? 0 : port + 4));
  if (consolePort !== false)
    await ensureFree(consolePort, "sandbox console", "--console-port N (or --no-console)");
  const publicBaseUrl = `https://localhost:${port}`;
  const psc = await startPscSimulator({
    port: pscPort,
    tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem },
    clients: SANDBOX_CLIENT_IDS.map((id) => ({
      id,
      redirectUris: [`${publicBaseUrl}/oauth2/codeflow/${id}/callback`],
    })),
    autoApproveMs: opts.approveAfterMs ?? 3_000,
    introspectionClients: [{ id: "sandbox-teleservice-as", secret: SANDBOX_AS_SECRET }],
  });
  const teleservices = await startTeleserviceSimulator({
    port: teleservicesPort,
    tls: { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem },
    psc: {
      introspectionEndpoint: `${psc.issuer}/protocol/openid-connect/token/introspect`,
      clientId: "sandbox-teleservice-as",
      clientSecret: SANDBOX_AS_SECRET,
      ca: pki.ca.certPem,
    },
  });
  const config = parseConfig(
    {
      server: {
        listenAddress: "127.0.0.1",
        port,
        publicBaseUrl,
        tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: pki.ca.certFile },
        shutdownGraceMs: 2_000,
      },
      psc: { discoveryUrl: psc.discoveryUrl, caFile: pki.ca.certFile },
      // Metrics on loopback, beside the simulators' ports.
      admin: { listenAddress: "127.0.0.1", port: adminPort },
      teleservices: [
        {
          name: "insi",
          upstreamUrl: `${teleservices.url}/insi`,
          caFile: pki.ca.certFile,
          tokenExchange: { endpoint: teleservices.tokenEndpoint, scope: "insi" },
        },
        {
          name: "dmp",
          upstreamUrl: `${teleservices.url}/dmp`,
          caFile: pki.ca.certFile,
          tokenExchange: { endpoint: teleservices.tokenEndpoint, scope: "dmp" },
        },
        { name: "echo", upstreamUrl: `${teleservices.url}/mtls-only`, caFile: pki.ca.certFile },
        {
          // The agency's conformity mock: JSON, behind its own token-exchange realm.
          name: "signsessiondata",
          upstreamUrl: teleservices.mockServiceUrl,
          caFile: pki.ca.certFile,
          tokenExchange: { endpoint: teleservices.signSessionDataTokenEndpoint, scope: "signsessiondata" },
          jsonAnswers: true,
        },
      ],
      clients: SANDBOX_CLIENT_IDS.map((id) => ({
        id,
        certFile: pki.clients[id]?.certFile,
        keyFile: pki.clients[id]?.keyFile,
        apiKeyHashes: [keys[id]?.hash],
        redirectUris: [SANDBOX_REDIRECT_URI],
        allowedServices: id === "lps-demo" ? ["insi", "dmp", "echo", "signsessiondata"] : ["insi"],
      })),
      ...(opts.strictMisuseLimits ? {} : { alerts: SANDBOX_RELAXED_ALERTS }),
      log: { level: opts.logLevel ?? "info" },
    },
    {},
  );
  const configFile = path.join(opts.certsDir, "sandbox.yaml");
  writeFileSync(
    configFile,
    `# Written by \`eproxy sandbox\` at each start (development only): the configuration it runs with.\n${toYaml(config)}`,
  );
  const log = createLogger(config.log.level);
  log.warn("SANDBOX: development PKI, in-memory stores and simulators; never use this in production");
  // Every push, as the professional's phone would show it (sandbox professionals are invented:
  // their national ids may be logged here, never by `serve`).
  psc.events.on("push", (p) => {
    const who = PROFESSIONALS[p.nationalId];
    log.info(
      {
        professional:
          `${p.nationalId} ${String(who?.given_name ?? "")} ${String(who?.family_name ?? "")}`.trim(),
        channel: p.channel || "MOBILE",
        bindingMessage: p.bindingMessage,
        clientId: p.clientId,
      },
      "sandbox: push sent to the professional",
    );
  });
  // The console sees sessions and traces through the stores handed to eProxy (nothing changes inside).
  const sessions = trackSessions(createMemoryStore(), sessionHashOf);
  const traceListeners = new Set<(events: readonly TraceEvent[]) => void>();
  mkdirSync(path.dirname(config.traces.file), { recursive: true });
  const traceStore = withholding(
    tapTraceStore(
      createMemoryTraceStore({
        file: config.traces.file,
        retentionMs: config.traces.retentionDays * 86_400_000,
      }),
      (events) => {
        for (const l of traceListeners) l(events);
      },
    ),
    new Set(opts.withholdTraces ?? []),
    log,
  );
  const deps = await createDeps(config, log, { store: sessions.store, traceStore });
  // The control API (and the console) accept the authReqId a backend holds: eProxy's, mapped to PSC's.
  const cibaStore = createCibaStore(deps.store);
  psc.resolveAuthReqId = async (id) => (await cibaStore.load(id))?.pscAuthReqId;
  const server = await startServer(deps);
  const sandboxConsole =
    consolePort === false
      ? undefined
      : await startConsole({
          port: consolePort,
          psc,
          teleservices,
          sessions: sessions.list,
          onTraces: (l) => {
            traceListeners.add(l);
            return () => traceListeners.delete(l);
          },
          log,
        });
  const ca = rel(pki.ca.certFile);
  // A ready-to-send INSi request, written next to the PKI for the curl example.
  const insiSample = insiSearchRequest("UNIQUE", "urn:uuid:00000000-0000-4000-8000-000000000001");
  const samplePath = path.join(opts.certsDir, "insi-request.xml");
  writeFileSync(samplePath, insiSample);
  const cert = rel(pki.clients["lps-demo"]?.certFile ?? "");
  const key = rel(pki.clients["lps-demo"]?.keyFile ?? "");
  const url = `https://localhost:${server.port}`;
  const bufCurl = `npx buf curl --cacert ${ca} --cert ${cert} --key ${key} --protocol grpc`;
  opts.out.write(
    [
      "",
      `eProxy sandbox ready on ${url}  (CA: ${ca})`,
      `PSC simulator on ${psc.issuer} (approves CIBA requests after ${(opts.approveAfterMs ?? 3000) / 1000} s; eProxy polls at PSC's 5 s interval, so a login answers after about 5 s)`,
      `Teleservice simulators on ${teleservices.url} (token exchange, INSi, DMP); relayed as /send/insi, /send/dmp/…`,
      ...(sandboxConsole
        ? [
            `Sandbox console (e-CPS phone, live view, faults): open ${sandboxConsole.url} in a browser`,
            "  (to answer pushes there yourself, turn its automatic approval off)",
          ]
        : []),
      `Metrics (Prometheus) on ${server.metricsUrl ?? "(admin listener off)"}`,
      `Configuration written to ${rel(configFile)}; check it with: npx eproxy doctor --config ${rel(configFile)} --client-ca ${ca}`,
      opts.strictMisuseLimits
        ? "Misuse limits: as in serve (blocking)"
        : "Misuse limits relaxed: alerts only, nobody is locked out (--strict-misuse-limits keeps serve's)",
      `Approve or deny a push by the backend's authReqId: curl --cacert ${ca} -X POST ${psc.issuer.replace(/\/auth\/realms\/.*$/, "")}/control/ciba/<authReqId>/approve (or /deny)`,
      `Backend credentials of lps-demo: client certificate ${cert}, or API key ${keys["lps-demo"]?.key}`,
      "",
      "Check it:",
      `  curl --cacert ${ca} ${url}/healthz`,
      `  npx buf curl --cacert ${ca} --list-methods ${url}`,
      "Authenticate a professional by CIBA (gRPC, then follow the request until it is approved):",
      `  ${bufCurl} ${url}/eproxy.v1.AuthService/StartCiba -d '{"clientId":"lps-demo","nationalId":"899700218896","channel":"CHANNEL_MOBILE","bindingMessage":"42"}'`,
      `  ${bufCurl} ${url}/eproxy.v1.AuthService/WatchCiba -d '{"authReqId":"<authReqId from the answer above>"}'`,
      // Another professional: the doctor now has a live session, and asking again would reuse it
      // (no push, and no token: it was handed to the first answer).
      "Or in one blocking REST call (here for the pharmacist):",
      `  curl --cacert ${ca} -H 'x-eproxy-api-key: ${keys["lps-demo"]?.key}' -H 'content-type: application/json' ${url}/oauth2/ciba -d '{"clientId":"lps-demo","nationalId":"899700366240","channel":"MOBILE","bindingMessage":"42"}'`,
      "Then relay an INSi search with the session token (eps_…) from either answer:",
      `  curl --cacert ${ca} -H 'x-eproxy-api-key: ${keys["lps-demo"]?.key}' -H 'authorization: Bearer <sessionToken>' -H 'content-type: application/soap+xml; charset=utf-8' ${url}/send/insi/rechercherInsAvecTraitsIdentite --data-binary @${rel(samplePath)}`,
      `  ${bufCurl} ${url}/eproxy.v1.RelayService/ForwardSoap -d '{"sessionToken":"<sessionToken>","service":"insi","contentType":"application/soap+xml; charset=utf-8","body":"${Buffer.from(insiSample).toString("base64")}"}'`,
      "Rehearse the agency's conformity test (CIBA login, its signsessiondata mock, signature, logout, traces):",
      `  npx eproxy conformity --url ${url} --ca ${ca} --cert ${cert} --key ${key} --client-id lps-demo --national-id 899700218896 --jwks-url ${teleservices.mockJwksUrl}`,
      "",
      "Ctrl-C stops it.",
      "",
    ].join("\n"),
  );
  return {
    url,
    psc,
    teleservices,
    ...(sandboxConsole ? { console: sandboxConsole } : {}),
    async close() {
      await sandboxConsole?.close();
      await server.close();
      await psc.close();
      await teleservices.close();
    },
  };
}
