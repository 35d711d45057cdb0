/**
 * The environment variables eProxy reads, in one table: the configuration file's name and the
 * overrides of its keys (secrets and URLs). config.ts applies them, `eproxy serve --help` lists them
 * and docs/reference/environment.md is generated from this table (`npm run docs:generate`).
 */

/** The variable naming the configuration file when `--config` is not given. */
export const CONFIG_FILE_VARIABLE = "EPROXY_CONFIG";

/** One environment variable overriding a key of the configuration file. */
export interface EnvOverride {
  /** Variable name. */
  name: string;
  /** The configuration key it sets. */
  path: readonly string[];
  /** What it is for, in one sentence (the documentation's column). */
  description: string;
}

/** Every override, in the order the documentation lists them. Each also reads `<name>_FILE`. */
export const ENV_VARIABLES: readonly EnvOverride[] = [
  { name: "EPROXY_PORT", path: ["server", "port"], description: "Port of the HTTPS listener." },
  {
    name: "EPROXY_LISTEN_ADDRESS",
    path: ["server", "listenAddress"],
    description: "Address the HTTPS listener binds.",
  },
  {
    name: "EPROXY_PUBLIC_BASE_URL",
    path: ["server", "publicBaseUrl"],
    description: "Public https URL of eProxy (the code flow's callback is built from it).",
  },
  {
    name: "EPROXY_INTERNAL_LISTEN_ADDRESS",
    path: ["server", "internalListener", "listenAddress"],
    description: "Turns the in-network cleartext listener on, bound to this (private) address.",
  },
  {
    name: "EPROXY_TLS_CERT_FILE",
    path: ["server", "tls", "certFile"],
    description: "Server certificate chain (PEM).",
  },
  {
    name: "EPROXY_TLS_KEY_FILE",
    path: ["server", "tls", "keyFile"],
    description: "Server private key (PEM).",
  },
  {
    name: "EPROXY_PSC_DISCOVERY_URL",
    path: ["psc", "discoveryUrl"],
    description: "Pro Santé Connect's discovery document.",
  },
  {
    name: "EPROXY_REDIS_URL",
    path: ["stores", "sessions"],
    description: "Sessions in Redis at this URL: `stores.sessions` becomes `{kind: redis, url}`.",
  },
  {
    name: "EPROXY_MONGODB_URL",
    path: ["stores", "mongodbUrl"],
    description: "MongoDB for traces and the client registry.",
  },
  { name: "EPROXY_LOG_LEVEL", path: ["log", "level"], description: "Log level." },
  {
    name: "EPROXY_STATE_DIR",
    path: ["stateDir"],
    description: "Writable directory of the trace spool (`/var/lib/eproxy` in the image).",
  },
  {
    name: "EPROXY_ADMIN_PORT",
    path: ["admin", "port"],
    description: "Turns the admin listener (`/metrics`) on, on this port.",
  },
  {
    name: "EPROXY_OTLP_ENDPOINT",
    path: ["tracing", "otlpEndpoint"],
    description: "Turns OpenTelemetry tracing on, exporting to this OTLP/HTTP endpoint.",
  },
];
