/**
 * The `eproxy` command: `serve`, `sandbox`, `certs`, `api-key`, `clients`.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { createApiKey } from "./auth/api-keys.ts";
import { runClients } from "./clients-cli.ts";
import { ConfigError, loadConfig, processEnv } from "./config.ts";
import { createDeps } from "./deps.ts";
import { ensureDevPki } from "./infra/dev-pki.ts";
import { createLogger } from "./log.ts";
import { runSandbox, SANDBOX_CLIENT_IDS } from "./sandbox/sandbox.ts";
import { type EproxyServer, startServer } from "./server.ts";

const USAGE = `Usage: eproxy <command> [options]

Commands:
  serve     --config FILE        run the proxy (or set EPROXY_CONFIG)
  sandbox   [--port 8443] [--psc-port 8444] [--teleservices-port 8445] [--dir certs]
            [--approve-after-ms 3000]
                                 run everything locally with zero configuration
  certs     [--dir certs] [--client ID]...
                                 create a development PKI (CA, server, client certificates)
  api-key                        print a new API key and the hash to put in the configuration
  clients   add|list|disable|enable|rotate-key --config FILE ...
                                 manage the clients registered in MongoDB (eproxy clients help)
`;

/** Stops the server on SIGTERM/SIGINT: stop accepting, drain, close the stores, exit. */
function closeOnSignals(server: { close(): Promise<void> }): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${signal} received: draining\n`);
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: "string", short: "c" } } });
  const env = processEnv();
  const config = loadConfig(values.config, env);
  const log = createLogger(config.log.level);
  const deps = await createDeps(config, log, { env });
  const server: EproxyServer = await startServer(deps);
  closeOnSignals(server);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "sandbox": {
      const { values } = parseArgs({
        args: rest,
        options: {
          port: { type: "string", short: "p" },
          "psc-port": { type: "string" },
          "teleservices-port": { type: "string" },
          dir: { type: "string" },
          "approve-after-ms": { type: "string" },
        },
      });
      const num = (name: string, v: string | undefined, max: number): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > max)
          throw new ConfigError(`--${name}: not a valid number: ${v}`);
        return n;
      };
      const pscPort = num("psc-port", values["psc-port"], 65535);
      const teleservicesPort = num("teleservices-port", values["teleservices-port"], 65535);
      const approveAfterMs = num("approve-after-ms", values["approve-after-ms"], 600_000);
      const sandbox = await runSandbox({
        port: num("port", values.port, 65535) ?? 8443,
        ...(pscPort !== undefined ? { pscPort } : {}),
        ...(teleservicesPort !== undefined ? { teleservicesPort } : {}),
        ...(approveAfterMs !== undefined ? { approveAfterMs } : {}),
        certsDir: path.resolve(values.dir ?? "certs"),
        out: process.stdout,
      });
      closeOnSignals(sandbox);
      return;
    }
    case "certs": {
      const { values } = parseArgs({
        args: rest,
        options: { dir: { type: "string" }, client: { type: "string", multiple: true } },
      });
      const dir = path.resolve(values.dir ?? "certs");
      const pki = await ensureDevPki(dir, values.client ?? SANDBOX_CLIENT_IDS);
      process.stdout.write(
        `development PKI in ${dir}\n  CA      ${pki.ca.certFile}\n  server  ${pki.server.certFile}\n` +
          Object.entries(pki.clients)
            .map(([id, c]) => `  client  ${id}: ${c.certFile}\n`)
            .join(""),
      );
      return;
    }
    case "api-key": {
      const { key, hash } = createApiKey();
      process.stdout.write(
        `API key (give it to the backend, shown once): ${key}\nconfiguration: apiKeyHashes: ["${hash}"]\n`,
      );
      return;
    }
    case "clients":
      return runClients(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return;
    default:
      process.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (
    err instanceof ConfigError ||
    (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))
  ) {
    process.stderr.write(`eproxy: ${err.message}\n`);
    process.exit(2);
  }
  const what = process.argv[2] === "clients" ? "clients" : "failed to start";
  process.stderr.write(`eproxy: ${what}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
