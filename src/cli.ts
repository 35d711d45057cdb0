/**
 * The `eproxy` command: `serve`, `doctor`, `clients`, `api-key`, and the development commands
 * `sandbox` and `certs`. Each command's code is imported when the command runs, so `eproxy --help`
 * and `eproxy serve` never load the sandbox, its simulators or their packages (oidc-provider, koa,
 * the X.509 generator), which are development dependencies absent from the production image.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const USAGE = `Usage: eproxy <command> [options]

Commands:
  serve     --config FILE        run the proxy (or set EPROXY_CONFIG)
  doctor    --config FILE        check a deployment before go-live: certificates, PSC, authorization
                                 servers, teleservices, Redis, MongoDB, TLS, clock (one verdict a line)
  clients   add|list|disable|enable|rotate-key --config FILE ...
                                 manage the clients registered in MongoDB
  api-key                        print a new API key and the hash to put in the configuration
  sandbox   [--port 8443] ...    development: everything locally with zero configuration
  certs     [--dir certs] ...    development: create a PKI (CA, server, client certificates)

Options:
  -h, --help                     help (also after any command: eproxy serve --help)
  -v, --version                  version of eProxy and of its contract

Exit status: 0 success, 1 failure at run time, 2 usage or configuration error.
`;

/** Help of each command, printed by `eproxy <command> --help`. */
const COMMAND_USAGE: Record<string, string> = {
  serve: `Usage: eproxy serve [--config FILE]

Runs the proxy with the configuration FILE (default: the EPROXY_CONFIG environment variable).
Environment overrides: EPROXY_PORT, EPROXY_LISTEN_ADDRESS, EPROXY_PUBLIC_BASE_URL, EPROXY_TLS_CERT_FILE,
EPROXY_TLS_KEY_FILE, EPROXY_PSC_DISCOVERY_URL, EPROXY_REDIS_URL, EPROXY_MONGODB_URL, EPROXY_LOG_LEVEL,
EPROXY_STATE_DIR (where the trace spool lives; must be writable).
SIGTERM or SIGINT drains and stops it.

Options:
  -c, --config FILE   configuration file (YAML)
  -h, --help          this help

Exit status: 0 stopped cleanly, 1 failure at run time, 2 configuration error (the message names the key).
`,
  doctor: `Usage: eproxy doctor [--config FILE] [--client-ca FILE]... [--timeout-ms 5000] [--json]

Checks a deployment as the trust-space referencing needs it, without any business call, and prints
one verdict a line (ok, warn, fail, skip):
  configuration valid and every file it names readable; each client certificate chains to its CA
  (--client-ca), matches its key, has the client id as CN and is not about to expire (warn < 30 days);
  PSC discovery reachable over mTLS and each client accepted by PSC; each token-exchange server and
  teleservice reachable over mTLS (TLS handshake only); Redis and MongoDB reachable with the configured
  credentials and the encryption key ring usable; the listener's TLS settings; clock skew with PSC.

Options:
  -c, --config FILE     configuration file (default: EPROXY_CONFIG)
  --client-ca FILE      CA certificate(s) the client certificates must chain to (repeatable)
  --timeout-ms N        time limit of each network check (default 5000)
  --json                one JSON object instead of the table
  -h, --help            this help

Exit status: 0 nothing failed (warnings allowed), 1 a check failed, 2 usage error or invalid configuration.
`,
  "api-key": `Usage: eproxy api-key

Prints a new API key (give it to the backend; shown once) and the hash to put in the configuration
(clients[].apiKeyHashes). Nothing is stored.

Options:
  -h, --help   this help (prints no key)
`,
  sandbox: `Usage: eproxy sandbox [--port 8443] [--psc-port P] [--teleservices-port P] [--dir certs]
                      [--approve-after-ms 3000] [--strict-misuse-limits]
                      [--withhold-traces TYPE,...]

Development only: a development PKI, the PSC simulator, the teleservice simulators and the proxy, with
in-memory stores, on one machine with zero configuration. Needs the development dependencies (npm ci).

Options:
  -p, --port N              proxy port (0: any free port)
  --psc-port N              PSC simulator port (default: port + 1)
  --teleservices-port N     teleservice simulators port (default: port + 2)
  --dir DIR                 where the development PKI lives (default: certs)
  --approve-after-ms N      delay before the simulator approves a CIBA request
  --strict-misuse-limits    block as \`serve\` does after repeated failures (default here: alerts only)
  --withhold-traces TYPES   drop these trace types (e.g. DISCONNECT): rehearses a proxy that fails
                            the conformity test's trace check (eproxy conformity)
  -h, --help                this help
`,
  certs: `Usage: eproxy certs [--dir certs] [--client ID]...

Development only: creates (or reuses) a development PKI in DIR: a CA, a server certificate for
localhost, and one client certificate per --client ID (CN = ID). Needs the development dependencies.

Options:
  --dir DIR       where to write it (default: certs)
  --client ID     a client certificate to create (repeatable; default: the sandbox clients)
  -h, --help      this help
`,
};

/** Thrown for a bad command line; the CLI exits with status 2. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The version in package.json (the image and the npm package ship it beside `src/`). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

function wantsHelp(args: readonly string[]): boolean {
  // Only before `--`: after it every word is an argument.
  const end = args.indexOf("--");
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === "--help" || a === "-h");
}

/**
 * Stops the server on SIGTERM/SIGINT: stop accepting, drain, close the stores, write the buffered log
 * lines (`beforeExit`), exit.
 */
function closeOnSignals(
  server: { close(): Promise<void> },
  beforeExit: () => Promise<void> = async () => {},
): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${signal} received: draining\n`);
    server.close().then(
      () => beforeExit().then(() => process.exit(0)),
      () => beforeExit().then(() => process.exit(1)),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { config: { type: "string", short: "c" } } });
  const { loadConfig, processEnv } = await import("./config.ts");
  const { preflight } = await import("./preflight.ts");
  const env = processEnv();
  const config = loadConfig(values.config, env);
  preflight(config, env);
  const { createLogDestination, createLogger, flushLogs } = await import("./log.ts");
  const { createDeps } = await import("./deps.ts");
  const { startServer } = await import("./server.ts");
  const { serveWithWorkers } = await import("./cluster.ts");
  const destination = createLogDestination({ bufferBytes: config.log.bufferBytes });
  const log = createLogger(config.log.level, destination);
  // Unhandled rejections are logged and serving goes on; an uncaught exception exits on purpose.
  const { installProcessPolicy } = await import("./process-policy.ts");
  installProcessPolicy(log, () => flushLogs(destination));
  // One process, or a primary supervising `server.workers` processes that each run this.
  await serveWithWorkers(config, env, log, async (cfg, workerLog, overrides) => {
    const deps = await createDeps(cfg, workerLog, { env, ...overrides });
    closeOnSignals(await startServer(deps), () => flushLogs(destination));
  });
}

/** Imports a development-only module; the production image has neither it nor its packages. */
async function devImport<T>(load: () => Promise<T>, command: string): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ERR_MODULE_NOT_FOUND") {
      throw new UsageError(
        `${command} is a development command: it needs the source tree and its development dependencies (npm ci)`,
      );
    }
    throw err;
  }
}

async function sandbox(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string", short: "p" },
      "psc-port": { type: "string" },
      "teleservices-port": { type: "string" },
      dir: { type: "string" },
      "approve-after-ms": { type: "string" },
      "strict-misuse-limits": { type: "boolean" },
      "withhold-traces": { type: "string" },
    },
  });
  const num = (name: string, v: string | undefined, max: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`--${name}: not a valid number: ${v}`);
    return n;
  };
  const pscPort = num("psc-port", values["psc-port"], 65535);
  const teleservicesPort = num("teleservices-port", values["teleservices-port"], 65535);
  const approveAfterMs = num("approve-after-ms", values["approve-after-ms"], 600_000);
  const port = num("port", values.port, 65535) ?? 8443;
  const { runSandbox } = await devImport(() => import("./sandbox/sandbox.ts"), "sandbox");
  const running = await runSandbox({
    port,
    ...(pscPort !== undefined ? { pscPort } : {}),
    ...(teleservicesPort !== undefined ? { teleservicesPort } : {}),
    ...(approveAfterMs !== undefined ? { approveAfterMs } : {}),
    ...(values["strict-misuse-limits"] ? { strictMisuseLimits: true } : {}),
    ...(values["withhold-traces"] ? { withholdTraces: values["withhold-traces"].split(",") } : {}),
    certsDir: path.resolve(values.dir ?? "certs"),
    out: process.stdout,
  });
  closeOnSignals(running);
}

async function certs(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { dir: { type: "string" }, client: { type: "string", multiple: true } },
  });
  const { ensureDevPki } = await devImport(() => import("./infra/dev-pki.ts"), "certs");
  const { SANDBOX_CLIENT_IDS } = await devImport(() => import("./sandbox/sandbox.ts"), "certs");
  const dir = path.resolve(values.dir ?? "certs");
  const pki = await ensureDevPki(dir, values.client ?? SANDBOX_CLIENT_IDS);
  process.stdout.write(
    `development PKI in ${dir}\n  CA      ${pki.ca.certFile}\n  server  ${pki.server.certFile}\n` +
      Object.entries(pki.clients)
        .map(([id, c]) => `  client  ${id}: ${c.certFile}\n`)
        .join(""),
  );
}

async function apiKey(args: string[]): Promise<void> {
  parseArgs({ args, options: {} });
  const { createApiKey } = await import("./auth/api-keys.ts");
  const { key, hash } = createApiKey();
  process.stdout.write(
    `API key (give it to the backend, shown once): ${key}\nconfiguration: apiKeyHashes: ["${hash}"]\n`,
  );
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "help":
    case "--help":
    case "-h": {
      const topic = command === "help" ? rest[0] : undefined;
      if (topic && topic !== "clients" && !COMMAND_USAGE[topic])
        throw new UsageError(`unknown command: ${topic}`);
      if (topic === "clients") {
        const { clientsUsage } = await import("./clients-cli.ts");
        process.stdout.write(clientsUsage(rest[1]));
      } else process.stdout.write(topic ? (COMMAND_USAGE[topic] as string) : USAGE);
      return;
    }
    case "--version":
    case "-v":
    case "version":
      process.stdout.write(`eproxy ${version()} (contract eproxy.v1, Node.js ${process.version})\n`);
      return;
    case "clients": {
      // `clients` has subcommands, each with its own help: it handles --help itself.
      const { runClients } = await import("./clients-cli.ts");
      return runClients(rest);
    }
    case "doctor": {
      if (wantsHelp(rest)) break;
      const { runDoctor } = await import("./doctor/doctor.ts");
      process.exitCode = await runDoctor(rest, process.stdout);
      return;
    }
    case "serve":
    case "sandbox":
    case "certs":
    case "api-key":
      break;
    default:
      throw new UsageError(`unknown command: ${command}\n\n${USAGE}`);
  }
  if (wantsHelp(rest)) {
    process.stdout.write(COMMAND_USAGE[command] as string);
    return;
  }
  if (command === "serve") return serve(rest);
  if (command === "sandbox") return sandbox(rest);
  if (command === "certs") return certs(rest);
  return apiKey(rest);
}

main(process.argv.slice(2)).catch(async (err: unknown) => {
  const { ConfigError } = await import("./config.ts");
  if (
    err instanceof UsageError ||
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
