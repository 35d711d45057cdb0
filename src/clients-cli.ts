/**
 * `eproxy clients add|list|disable|enable|rotate-key`: manages the clients registered in MongoDB.
 * API keys are printed once and stored as hashes; certificates are referenced by path, or stored
 * with their private key sealed under the encryption key ring (`--store-cert`).
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { createApiKey } from "./auth/api-keys.ts";
import { type ClientSource, clientKeyAad, type StoredClient } from "./auth/clients.ts";
import {
  DEFAULT_PSC_AUTH_METHOD,
  isPscAuthMethod,
  PSC_AUTH_METHOD_NAMES,
  PSC_AUTH_METHODS,
  requirementOf,
} from "./auth/psc-client-auth.ts";
import { type ClientConfig, type Config, ConfigError, loadConfig, processEnv } from "./config.ts";
import { identityFromPem, loadClientIdentity } from "./infra/client-tls.ts";
import { loadKeyRing } from "./infra/key-ring.ts";
import { createMongoClientSource } from "./infra/mongo-clients.ts";

const AUTH_METHODS = PSC_AUTH_METHOD_NAMES;
/** `--auth-method` help: one line per method of the table. */
const AUTH_METHOD_HELP = AUTH_METHODS.map(
  (m) => `                                  ${m}: ${PSC_AUTH_METHODS[m].summary}`,
).join("\n");

const SUBCOMMAND_USAGE: Record<string, string> = {
  list: `Usage: eproxy clients list --config FILE [--json]

Every client, from the configuration file and from MongoDB (when stores.mongodbUrl is set), without
secrets. Without MongoDB it lists the configuration's clients and says so.
`,
  add: `Usage: eproxy clients add --config FILE --id ID
         (--cert-file F --key-file F | --pkcs12-file F [--pkcs12-passphrase-file F]) [--store-cert]
         [--auth-method METHOD] [--client-secret-file F] [--signing-key-file F] [--signing-key-id KID]
         [--service NAME]... [--redirect-uri URL]... [--expose-psc-tokens] [--max-pending-ciba N]

Registers a client in MongoDB and prints its API key once (stored as a hash). The certificate must match
its key and carry ID as its CN.

Options:
  --id ID                       client id (the certificate's CN)
  --cert-file F, --key-file F   the client certificate and its key (PEM)
  --pkcs12-file F               or a PKCS#12 bundle, with --pkcs12-passphrase-file F
  --store-cert                  store the certificate in MongoDB, its key sealed by the key ring
  --auth-method METHOD          how the client authenticates to PSC:
${AUTH_METHOD_HELP}
  --client-secret-file F        ${AUTH_METHODS.filter((m) => requirementOf(m) === "clientSecretFile").join(", ")}: the secret
  --signing-key-file F          private_key_jwt: the signing key (default: the certificate's key)
  --signing-key-id KID          private_key_jwt: the kid PSC knows the key by
  --service NAME                a teleservice the client may call (repeatable)
  --redirect-uri URL            a code-flow redirect URI (repeatable)
  --expose-psc-tokens           return PSC tokens to this client
  --max-pending-ciba N          pending CIBA requests allowed (default 20)
`,
  disable: `Usage: eproxy clients disable --config FILE --id ID

The client stops authenticating; its sessions become unusable (within clientsRefreshSeconds).
`,
  enable: `Usage: eproxy clients enable --config FILE --id ID
`,
  "rotate-key": `Usage: eproxy clients rotate-key --config FILE --id ID [--keep-previous]

Prints a new API key once; the old one stops working (--keep-previous: it keeps working until the next
rotation).
`,
};

/** The `clients` subcommands, in the order of the help. */
export const CLIENTS_SUBCOMMANDS: readonly string[] = Object.keys(SUBCOMMAND_USAGE);

/** `eproxy clients --help`. */
export const CLIENTS_USAGE = `Usage: eproxy clients <command> --config FILE [options]

  list        [--json]           every client: configuration, and MongoDB when set (no secrets)
  add         --id ID (--cert-file F --key-file F | --pkcs12-file F [--pkcs12-passphrase-file F])
              [--store-cert] [--service NAME]... [--redirect-uri URL]...
              [--auth-method ${AUTH_METHODS.join("|")}]
              [--client-secret-file F] [--signing-key-file F] [--signing-key-id KID]
              [--expose-psc-tokens] [--max-pending-ciba N]
                                 register a client; prints its API key once
  disable     --id ID            the client stops authenticating; its sessions become unusable
  enable      --id ID
  rotate-key  --id ID [--keep-previous]
                                 new API key, printed once; the old one stops working
                                 (--keep-previous: the last key keeps working until the next rotation)

eproxy clients <command> --help: the options of one command.
`;

/** Help of `eproxy clients` or of one of its commands. */
export function clientsUsage(command?: string): string {
  return (command && SUBCOMMAND_USAGE[command]) || CLIENTS_USAGE;
}

const OPTIONS = {
  config: { type: "string", short: "c" },
  id: { type: "string" },
  "cert-file": { type: "string" },
  "key-file": { type: "string" },
  "pkcs12-file": { type: "string" },
  "pkcs12-passphrase-file": { type: "string" },
  "store-cert": { type: "boolean" },
  service: { type: "string", multiple: true },
  "redirect-uri": { type: "string", multiple: true },
  "auth-method": { type: "string" },
  "client-secret-file": { type: "string" },
  "signing-key-file": { type: "string" },
  "signing-key-id": { type: "string" },
  "expose-psc-tokens": { type: "boolean" },
  "max-pending-ciba": { type: "string" },
  "keep-previous": { type: "boolean" },
  json: { type: "boolean" },
} as const;

type Out = { write(s: string): unknown };

/** Runs `eproxy clients ...`; usage errors are ConfigErrors (exit code 2). */
export async function runClients(argv: string[], out: Out = process.stdout): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    out.write(clientsUsage(command === "help" ? rest[0] : undefined));
    return;
  }
  if (!SUBCOMMAND_USAGE[command]) {
    throw new ConfigError(`unknown clients command: ${command}\n\n${CLIENTS_USAGE}`);
  }
  const end = rest.indexOf("--");
  if ((end === -1 ? rest : rest.slice(0, end)).some((a) => a === "--help" || a === "-h")) {
    out.write(clientsUsage(command));
    return;
  }
  const { values } = parseArgs({ args: rest, options: OPTIONS, strict: true });
  const env = processEnv();
  const config = loadConfig(values.config, env);
  if (!config.stores.mongodbUrl) {
    // The configuration's clients exist without MongoDB: list them; changes need the registry.
    if (command === "list") return list(config, undefined, out, values.json === true);
    throw new ConfigError("the client registry needs stores.mongodbUrl");
  }
  const source = createMongoClientSource(config.stores.mongodbUrl, { timeoutMs: 5_000 });
  try {
    const id = () => {
      if (!values.id) throw new ConfigError("--id is required");
      return values.id;
    };
    switch (command) {
      case "list":
        return await list(config, source, out, values.json === true);
      case "add":
        return await add(config, source, out, { ...values, id: id() }, env);
      case "disable":
      case "enable":
        return await setDisabled(config, source, out, id(), command === "disable");
      case "rotate-key":
        return await rotate(config, source, out, id(), values["keep-previous"] === true);
      default:
        throw new ConfigError(`unknown clients command: ${command}\n\n${CLIENTS_USAGE}`);
    }
  } finally {
    await source.close();
  }
}

async function list(
  config: Readonly<Config>,
  source: ClientSource | undefined,
  out: Out,
  json: boolean,
): Promise<void> {
  const stored = source ? await source.list() : [];
  const configured = new Set(config.clients.map((c) => c.id));
  const rows = [
    ...config.clients.map((c) => row(c, "config", "enabled")),
    ...stored.map((s) =>
      row(s, "mongodb", configured.has(s.id) ? "shadowed by config" : s.disabled ? "disabled" : "enabled", s),
    ),
  ];
  if (json) {
    out.write(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  const cols = ["id", "origin", "status", "authMethod", "apiKeys", "certificate", "services"] as const;
  const cells = rows.map((r) => cols.map((c) => String(Array.isArray(r[c]) ? r[c].join(",") : r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => (r[i] as string).length)));
  const line = (r: readonly string[]) =>
    `${r.map((v, i) => v.padEnd(widths[i] as number)).join("  ")}`.trimEnd();
  out.write(`${[line(cols.map((c) => c.toUpperCase())), ...cells.map(line)].join("\n")}\n`);
  if (!source) out.write("(no stores.mongodbUrl: the configuration's clients only)\n");
}

function row(c: ClientConfig, origin: "config" | "mongodb", status: string, s?: StoredClient) {
  return {
    id: c.id,
    origin,
    status,
    authMethod: c.authMethod,
    apiKeys: c.apiKeyHashes.length,
    certificate: s?.certPem ? "stored (key sealed)" : (c.certFile ?? c.pkcs12File ?? ""),
    services: c.allowedServices,
  };
}

async function add(
  config: Readonly<Config>,
  source: ClientSource,
  out: Out,
  v: {
    [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K] extends { multiple: true }
      ? string[]
      : string | boolean;
  } & {
    id: string;
  },
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const str = (k: keyof typeof OPTIONS) => (typeof v[k] === "string" ? (v[k] as string) : undefined);
  const abs = (p: string | undefined) => (p ? path.resolve(p) : undefined);
  if (config.clients.some((c) => c.id === v.id)) {
    throw new ConfigError(`client ${v.id} is defined in the configuration file, which wins: change it there`);
  }
  const services = (v.service as string[] | undefined) ?? [];
  const known = new Set(config.teleservices.map((t) => t.name));
  for (const s of services) if (!known.has(s)) throw new ConfigError(`--service ${s}: no such teleservice`);
  const maxPending = str("max-pending-ciba");
  if (maxPending !== undefined && !(Number.isInteger(Number(maxPending)) && Number(maxPending) > 0)) {
    throw new ConfigError("--max-pending-ciba: a positive integer");
  }
  const authMethod = str("auth-method") ?? DEFAULT_PSC_AUTH_METHOD;
  if (!isPscAuthMethod(authMethod)) {
    throw new ConfigError(`--auth-method ${authMethod}: one of ${AUTH_METHODS.join(", ")}`);
  }
  if (requirementOf(authMethod) === "clientSecretFile" && !str("client-secret-file")) {
    throw new ConfigError(`--auth-method ${authMethod} needs --client-secret-file`);
  }
  const { key, hash } = createApiKey();
  const now = Date.now();
  const fields = {
    id: v.id,
    authMethod,
    ...(str("client-secret-file") ? { clientSecretFile: abs(str("client-secret-file")) } : {}),
    ...(str("signing-key-file") ? { signingKeyFile: abs(str("signing-key-file")) } : {}),
    ...(str("signing-key-id") ? { signingKeyId: str("signing-key-id") } : {}),
    apiKeyHashes: [hash],
    redirectUris: (v["redirect-uri"] as string[] | undefined) ?? [],
    allowedServices: services,
    exposePscTokens: v["expose-psc-tokens"] === true,
    maxPendingCiba: maxPending ? Number(maxPending) : 20,
  };
  let client: StoredClient;
  const certFile = str("cert-file");
  const keyFile = str("key-file");
  const p12 = str("pkcs12-file");
  if (v["store-cert"]) {
    if (!certFile || !keyFile) throw new ConfigError("--store-cert needs --cert-file and --key-file (PEM)");
    if (!config.stores.encryption)
      throw new ConfigError("--store-cert needs stores.encryption (the key ring)");
    const ring = loadKeyRing(config.stores.encryption, env);
    const certPem = readInput(certFile, "--cert-file");
    const keyPem = readInput(keyFile, "--key-file");
    checkCertificate(v.id, () => identityFromPem(v.id, certPem, keyPem), certPem);
    client = {
      ...(fields as ClientConfig),
      certPem,
      keySealed: ring.seal(keyPem, clientKeyAad(v.id)),
      disabled: false,
      createdAt: now,
      updatedAt: now,
    };
  } else {
    if (!(certFile && keyFile) && !p12) {
      throw new ConfigError("a certificate is required: --cert-file and --key-file, or --pkcs12-file");
    }
    const files = p12
      ? {
          pkcs12File: abs(p12) as string,
          ...(str("pkcs12-passphrase-file")
            ? { pkcs12PassphraseFile: abs(str("pkcs12-passphrase-file")) }
            : {}),
        }
      : { certFile: abs(certFile) as string, keyFile: abs(keyFile) as string };
    const candidate = { ...(fields as ClientConfig), ...files } as ClientConfig;
    checkCertificate(
      v.id,
      () => loadClientIdentity(candidate),
      certFile ? readInput(certFile, "--cert-file") : undefined,
    );
    client = { ...candidate, disabled: false, createdAt: now, updatedAt: now };
  }
  if (!(await source.insert(client))) throw new ConfigError(`client ${v.id} already exists in MongoDB`);
  out.write(
    `client ${v.id} registered in MongoDB (active on every replica within ${config.stores.clientsRefreshSeconds} s)\n` +
      `API key (give it to the backend; shown once, stored as a hash): ${key}\n`,
  );
}

/** Reads a file named on the command line; a missing or unreadable one is a usage error. */
function readInput(file: string, option: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    throw new ConfigError(`${option} ${file}: cannot be read`);
  }
}

/** The certificate must load, match its key, and carry the client id as its CN. */
function checkCertificate(id: string, load: () => unknown, certPem: string | undefined): void {
  try {
    load();
  } catch (err) {
    throw new ConfigError(`certificate unusable: ${(err as Error).message}`);
  }
  if (certPem) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(new X509Certificate(certPem).subject)?.[1];
    if (cn !== id)
      throw new ConfigError(`the certificate's CN (${cn ?? "none"}) must be the client id ${id}`);
  }
}

async function setDisabled(
  config: Readonly<Config>,
  source: ClientSource,
  out: Out,
  id: string,
  disabled: boolean,
): Promise<void> {
  if (config.clients.some((c) => c.id === id)) {
    throw new ConfigError(`client ${id} is defined in the configuration file: remove it there`);
  }
  if (!(await source.update(id, { disabled, updatedAt: Date.now() }))) {
    throw new ConfigError(`no client ${id} in MongoDB`);
  }
  out.write(
    `client ${id} ${disabled ? "disabled" : "enabled"} (within ${config.stores.clientsRefreshSeconds} s)\n`,
  );
}

async function rotate(
  config: Readonly<Config>,
  source: ClientSource,
  out: Out,
  id: string,
  keepPrevious: boolean,
): Promise<void> {
  if (config.clients.some((c) => c.id === id)) {
    throw new ConfigError(`client ${id} is defined in the configuration file: change its apiKeyHashes there`);
  }
  const current = await source.get(id);
  if (!current) throw new ConfigError(`no client ${id} in MongoDB`);
  const { key, hash } = createApiKey();
  const previous = keepPrevious ? current.apiKeyHashes.slice(0, 1) : [];
  await source.update(id, { apiKeyHashes: [hash, ...previous], updatedAt: Date.now() });
  out.write(
    `new API key for ${id} (shown once; effective within ${config.stores.clientsRefreshSeconds} s): ${key}\n` +
      (keepPrevious
        ? "the previous key keeps working until the next rotation\n"
        : "the previous key is revoked\n"),
  );
}
