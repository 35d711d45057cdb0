/**
 * The `eproxy` command: `serve`, `doctor`, `conformity`, `clients`, `api-key`, and the development commands
 * `sandbox` and `certs`. Each command's code is imported when the command runs, so `eproxy --help`
 * and `eproxy serve` never load the sandbox, its simulators or their packages (oidc-provider, koa,
 * the X.509 generator), which are development dependencies absent from the production image.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { COMMAND_USAGE, USAGE } from "./cli-usage.ts";

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
      "console-port": { type: "string" },
      "no-console": { type: "boolean" },
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
  const consolePort = values["no-console"] ? false : num("console-port", values["console-port"], 65535);
  const { runSandbox } = await devImport(() => import("./sandbox/sandbox.ts"), "sandbox");
  const running = await runSandbox({
    port,
    ...(pscPort !== undefined ? { pscPort } : {}),
    ...(teleservicesPort !== undefined ? { teleservicesPort } : {}),
    ...(approveAfterMs !== undefined ? { approveAfterMs } : {}),
    ...(values["strict-misuse-limits"] ? { strictMisuseLimits: true } : {}),
    ...(values["withhold-traces"] ? { withholdTraces: values["withhold-traces"].split(",") } : {}),
    ...(consolePort !== undefined ? { consolePort } : {}),
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
    case "conformity": {
      if (wantsHelp(rest)) break;
      const { runConformity } = await import("./conformity/conformity.ts");
      process.exitCode = await runConformity(rest, process.stdout);
      return;
    }
    case "traces": {
      if (wantsHelp(rest) || rest.length === 0) break;
      const { runTraces } = await import("./traces-cli.ts");
      process.exitCode = await runTraces(rest);
      return;
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
  const command = process.argv[2];
  const what = command === "clients" || command === "traces" ? command : "failed to start";
  process.stderr.write(`eproxy: ${what}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
