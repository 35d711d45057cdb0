/**
 * Start-up checks of what the configuration names on disk, each problem reported with the key that
 * names it (`server.tls.keyFile: cannot read /x: no such file`), so that `eproxy serve` refuses a bad
 * deployment with exit status 2 before it opens anything. `eproxy doctor` shows the same findings.
 */
import { accessSync, constants, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { createSecureContext } from "node:tls";
import { type Config, ConfigError } from "./config.ts";
import { loadClientIdentity } from "./infra/client-tls.ts";
import { loadKeyRing } from "./infra/key-ring.ts";

/** One problem found in the configuration, named by its key (`clients[0].certFile`). */
export interface ConfigProblem {
  key: string;
  message: string;
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "a parent is not a directory",
  EROFS: "read-only file system",
};

/** A short reason for a file-system error code. */
export function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code ?? "";
  return ERRNO_TEXT[code] ?? (code || (err as Error).message);
}

/** Every input file the configuration names, with its key. */
export function inputFiles(config: Readonly<Config>): { key: string; file: string }[] {
  const out: { key: string; file: string }[] = [];
  const add = (key: string, file: string | undefined) => {
    if (file) out.push({ key, file });
  };
  add("server.tls.certFile", config.server.tls.certFile);
  add("server.tls.keyFile", config.server.tls.keyFile);
  add("server.tls.clientCaFile", config.server.tls.clientCaFile);
  add("psc.caFile", config.psc.caFile);
  config.clients.forEach((c, i) => {
    for (const k of [
      "certFile",
      "keyFile",
      "pkcs12File",
      "pkcs12PassphraseFile",
      "clientSecretFile",
      "signingKeyFile",
    ] as const) {
      add(`clients[${i}].${k}`, c[k]);
    }
  });
  config.teleservices.forEach((t, i) => {
    add(`teleservices[${i}].caFile`, t.caFile);
  });
  const sessions = config.stores.sessions;
  if (sessions.kind === "redis") add("stores.sessions.caFile", sessions.caFile);
  config.stores.encryption?.keys.forEach((k, i) => {
    add(`stores.encryption.keys[${i}].file`, k.file);
  });
  return out;
}

/** Files that cannot be read. */
export function fileProblems(config: Readonly<Config>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const { key, file } of inputFiles(config)) {
    try {
      if (statSync(file).isDirectory()) throw Object.assign(new Error("directory"), { code: "EISDIR" });
      accessSync(file, constants.R_OK);
    } catch (err) {
      problems.push({ key, message: `cannot read ${file}: ${errnoText(err)}` });
    }
  }
  return problems;
}

/** The listener's certificate and key, the clients' certificates and the key ring, when their files read. */
export function materialProblems(config: Readonly<Config>, env: NodeJS.ProcessEnv): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const unreadable = new Set(fileProblems(config).map((p) => p.key));
  if (!unreadable.has("server.tls.certFile") && !unreadable.has("server.tls.keyFile")) {
    try {
      createSecureContext({
        cert: readFileSync(config.server.tls.certFile),
        key: readFileSync(config.server.tls.keyFile),
      });
    } catch (err) {
      problems.push({ key: "server.tls.keyFile", message: tlsText(err) });
    }
  }
  config.clients.forEach((c, i) => {
    const key = c.pkcs12File ? `clients[${i}].pkcs12File` : `clients[${i}].certFile`;
    if ([...unreadable].some((k) => k.startsWith(`clients[${i}].`))) return;
    try {
      loadClientIdentity(c);
    } catch (err) {
      problems.push({ key, message: `client ${c.id}: ${tlsText(err)}` });
    }
  });
  const enc = config.stores.encryption;
  if (enc) {
    enc.keys.forEach((k, i) => {
      if (k.env && !env[k.env]) {
        problems.push({
          key: `stores.encryption.keys[${i}].env`,
          message: `variable ${k.env} is unset or empty`,
        });
      }
    });
    if (
      !problems.some((p) => p.key.startsWith("stores.encryption")) &&
      ![...unreadable].some((k) => k.startsWith("stores.encryption"))
    ) {
      try {
        loadKeyRing(enc, env);
      } catch (err) {
        problems.push({ key: "stores.encryption", message: (err as Error).message });
      }
    }
  }
  return problems;
}

function tlsText(err: unknown): string {
  const m = (err as Error).message;
  if (/KEY_VALUES_MISMATCH|key values mismatch|does not match/i.test(m))
    return "the private key does not match the certificate";
  return m;
}

/** The directories eProxy writes to (the trace spool, and the traces file without MongoDB), created if missing. */
export function stateDirProblems(config: Readonly<Config>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const defaultSpool = config.traces.spoolFile === path.join(config.stateDir, "traces.spool");
  const dirs = [
    { key: defaultSpool ? "stateDir" : "traces.spoolFile", dir: path.dirname(config.traces.spoolFile) },
  ];
  if (!config.stores.mongodbUrl) {
    const defaultFile = config.traces.file === path.join(config.stateDir, "traces.jsonl");
    dirs.push({ key: defaultFile ? "stateDir" : "traces.file", dir: path.dirname(config.traces.file) });
  }
  const seen = new Set<string>();
  for (const { key, dir } of dirs) {
    if (seen.has(dir)) continue;
    seen.add(dir);
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.W_OK);
    } catch (err) {
      problems.push({
        key,
        message:
          `cannot write ${dir}: ${errnoText(err)}; the trace spool lives there: ` +
          "set stateDir (or EPROXY_STATE_DIR) to a writable directory",
      });
    }
  }
  return problems;
}

/** Formats problems as one line, or as a list when there are several. */
export function formatProblems(problems: readonly ConfigProblem[]): string {
  if (problems.length === 1) return `${problems[0]?.key}: ${problems[0]?.message}`;
  return `invalid configuration:\n${problems.map((p) => `  - ${p.key}: ${p.message}`).join("\n")}`;
}

/** Throws a ConfigError naming every key whose file, material or directory is unusable. */
export function preflight(config: Readonly<Config>, env: NodeJS.ProcessEnv): void {
  const problems = [...fileProblems(config), ...materialProblems(config, env), ...stateDirProblems(config)];
  if (problems.length > 0) throw new ConfigError(formatProblems(problems));
}
