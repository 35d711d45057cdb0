/**
 * `eproxy sandbox`: everything a newcomer needs on one machine, with zero configuration — a
 * development PKI, the proxy on a fixed port, and how to call it. Never imported by `serve`.
 */
import path from "node:path";
import { parseConfig } from "../config.ts";
import { createDeps } from "../deps.ts";
import { ensureDevPki } from "../infra/dev-pki.ts";
import { createLogger } from "../log.ts";
import { startServer } from "../server.ts";

/** Client ids (certificate CNs) of the sandbox backends. */
export const SANDBOX_CLIENT_IDS = ["lps-demo", "lps-other"] as const;

/** Options of the sandbox. */
export interface SandboxOptions {
  /** Proxy port (8443 by default; 0 picks a free one). */
  port: number;
  /** Where the development PKI lives. */
  certsDir: string;
  /** Where the instructions are printed. */
  out: NodeJS.WritableStream;
  /** Log level of the embedded proxy. */
  logLevel?: string;
}

/** A running sandbox. */
export interface Sandbox {
  /** URL of the proxy. */
  url: string;
  /** Stops everything. */
  close(): Promise<void>;
}

function rel(file: string): string {
  const r = path.relative(process.cwd(), file);
  return r.startsWith("..") ? file : r;
}

/** Starts the sandbox and prints how to call it. */
export async function runSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const pki = await ensureDevPki(opts.certsDir, SANDBOX_CLIENT_IDS);
  const config = parseConfig(
    {
      server: {
        listenAddress: "127.0.0.1",
        port: opts.port,
        tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: pki.ca.certFile },
        shutdownGraceMs: 2_000,
      },
      psc: {
        // The PSC simulator joins the sandbox with the authentication feature.
        discoveryUrl:
          "https://localhost:8444/auth/realms/esante-wallet/.well-known/wallet-openid-configuration",
        caFile: pki.ca.certFile,
      },
      clients: SANDBOX_CLIENT_IDS.map((id) => ({
        id,
        certFile: pki.clients[id]?.certFile,
        keyFile: pki.clients[id]?.keyFile,
      })),
      log: { level: opts.logLevel ?? "info" },
    },
    {},
  );
  const log = createLogger(config.log.level);
  log.warn("SANDBOX: development PKI, in-memory stores and simulators; never use this in production");
  const deps = await createDeps(config, log);
  const server = await startServer(deps);
  const ca = rel(pki.ca.certFile);
  opts.out.write(
    [
      "",
      `eProxy sandbox ready on ${server.url}  (CA: ${ca})`,
      "",
      "Check it:",
      `  curl --cacert ${ca} ${server.url}/healthz`,
      `  npx buf curl --cacert ${ca} --list-methods ${server.url}`,
      "Call it:",
      `  npx buf curl --cacert ${ca} --protocol grpc ${server.url}/eproxy.v1.AuthService/StartCiba -d '{"clientId":"lps-demo","nationalId":"899700218896","channel":"CHANNEL_MOBILE"}'`,
      "",
      "Ctrl-C stops it.",
      "",
    ].join("\n"),
  );
  return server;
}
