/**
 * Configuration: one YAML file, environment overrides for secrets and URLs, validated once with
 * zod, defaults in one place, deeply frozen. This is the only module that reads `process.env`.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { DEFAULT_PSC_AUTH_METHOD, PSC_AUTH_METHOD_NAMES, requirementOf } from "./auth/psc-client-auth.ts";
import { CONFIG_FILE_VARIABLE, ENV_VARIABLES } from "./config-env.ts";

const port = z.number().int().min(0).max(65535);
const positiveMs = z.number().int().positive();
const filePath = z.string().min(1);
/** PSC and authorization-server URLs: tokens and client credentials never travel in clear. */
const httpsUrl = z.url().refine((u) => u.startsWith("https://"), "must be an https:// URL");

const pscEndpoints = z
  .object({
    authorization: httpsUrl.optional(),
    token: httpsUrl.optional(),
    userinfo: httpsUrl.optional(),
    backchannelAuthentication: httpsUrl.optional(),
    endSession: httpsUrl.optional(),
    revocation: httpsUrl.optional(),
    introspection: httpsUrl.optional(),
    jwks: httpsUrl.optional(),
  })
  .strict()
  .default({});

/** A misuse threshold: more than `max` events in `windowSeconds` raises an alert (and blocks). */
const thresholdSchema = z
  .object({
    max: z.number().int().positive(),
    windowSeconds: z.number().int().positive().max(86_400),
    /** Refuse further requests (TOO_MANY_REQUESTS) until the window ends. */
    block: z.boolean().default(true),
  })
  .strict();

/** Fields of a client, shared by the configuration file and the MongoDB registry. */
export const clientFieldsSchema = z.object({
  id: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, '.', '_' and '-'"),
  certFile: filePath.optional(),
  keyFile: filePath.optional(),
  pkcs12File: filePath.optional(),
  pkcs12PassphraseFile: filePath.optional(),
  authMethod: z.enum(PSC_AUTH_METHOD_NAMES).default(DEFAULT_PSC_AUTH_METHOD),
  clientSecretFile: filePath.optional(),
  /** private_key_jwt: the signing key (PEM, RSA or EC P-256); the certificate's key when absent. */
  signingKeyFile: filePath.optional(),
  /** private_key_jwt: the `kid` PSC knows the key by. */
  signingKeyId: z.string().min(1).optional(),
  apiKeyHashes: z
    .array(z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be 'sha256:' followed by 64 hex digits"))
    .default([]),
  redirectUris: z.array(z.url()).default([]),
  allowedServices: z.array(z.string()).default([]),
  exposePscTokens: z.boolean().default(false),
  maxPendingCiba: z.number().int().positive().default(20),
});

const clientSchema = clientFieldsSchema.strict().superRefine((c, ctx) => {
  const pem = c.certFile !== undefined || c.keyFile !== undefined;
  if (pem && (c.certFile === undefined || c.keyFile === undefined)) {
    ctx.addIssue({ code: "custom", message: "certFile and keyFile go together", path: ["certFile"] });
  }
  if (pem && c.pkcs12File !== undefined) {
    ctx.addIssue({
      code: "custom",
      message: "use either certFile/keyFile or pkcs12File",
      path: ["pkcs12File"],
    });
  }
  if (!pem && c.pkcs12File === undefined) {
    ctx.addIssue({
      code: "custom",
      message: "a client needs a certificate: certFile+keyFile or pkcs12File",
      path: ["certFile"],
    });
  }
  if (c.authMethod === "private_key_jwt" && c.signingKeyFile === undefined && c.keyFile === undefined) {
    ctx.addIssue({
      code: "custom",
      message: "required by authMethod private_key_jwt with a PKCS#12 certificate",
      path: ["signingKeyFile"],
    });
  }
  if (requirementOf(c.authMethod) === "clientSecretFile" && c.clientSecretFile === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `required by authMethod ${c.authMethod}`,
      path: ["clientSecretFile"],
    });
  }
});

const teleserviceSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "lowercase letters, digits and dashes"),
    upstreamUrl: z.url(),
    tokenExchange: z
      .object({
        endpoint: httpsUrl,
        scope: z.string().default(""),
        audience: z.string().optional(),
        resource: z.string().optional(),
        subjectTokenType: z.string().default("urn:ietf:params:oauth:token-type:access_token"),
        extraParams: z.record(z.string(), z.string()).default({ subject_issuer: "psc" }),
        refreshBeforeExpirySeconds: z.number().int().nonnegative().default(60),
      })
      .strict()
      .nullable()
      .default(null),
    caFile: filePath.optional(),
    connectTimeoutMs: positiveMs.default(5_000),
    headersTimeoutMs: positiveMs.default(30_000),
    bodyTimeoutMs: positiveMs.default(60_000),
    maxBodyBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
    maxConnectionsPerOrigin: z.number().int().positive().default(32),
    exposeCorrelationId: z.boolean().default(false),
    /**
     * Also relay `application/json` answers (a JSON teleservice, such as the agency's conformity mock
     * `signsessiondata`); otherwise only SOAP, XML and MTOM answers pass.
     */
    jsonAnswers: z.boolean().default(false),
    /** Send eProxy's W3C `traceparent` to this teleservice (a header; the SOAP body is never touched). */
    propagateTraceContext: z.boolean().default(false),
  })
  .strict();

const hostPort = z.string().regex(/^[\w.-]+:\d{1,5}$/, "must be host:port");
const sessionStoreSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("memory") }).strict(),
  z
    .object({
      kind: z.literal("redis"),
      /** Standalone URL; with sentinel/cluster it still carries credentials, db and rediss:// for TLS. */
      url: z.string().regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL"),
      sentinel: z
        .object({ name: z.string().min(1), nodes: z.array(hostPort).min(1) })
        .strict()
        .optional(),
      clusterNodes: z.array(hostPort).min(1).optional(),
      caFile: filePath.optional(),
      keyPrefix: z.string().default("eproxy:"),
      commandTimeoutMs: positiveMs.default(2_000),
    })
    .strict()
    .refine((r) => !(r.sentinel && r.clusterNodes), "use either sentinel or clusterNodes"),
]);

const encryptionKeySchema = z
  .object({
    id: z.string().regex(/^[\w-]{1,32}$/, "letters, digits, - and _ (at most 32)"),
    file: filePath.optional(),
    env: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, "an environment variable name")
      .optional(),
  })
  .strict()
  .refine((k) => (k.file === undefined) !== (k.env === undefined), "give exactly one of file or env");

/** The validated configuration schema (exported for documentation and tests). */
export const configSchema = z
  .object({
    server: z
      .object({
        listenAddress: z.string().default("0.0.0.0"),
        port: port.default(8443),
        publicBaseUrl: z
          .url()
          .refine((u) => u.startsWith("https://"), "must be an https:// URL")
          .optional(),
        tls: z
          .object({
            certFile: filePath,
            keyFile: filePath,
            clientCaFile: filePath.optional(),
          })
          .strict(),
        maxRequestBytes: z
          .number()
          .int()
          .positive()
          .default(16 * 1024 * 1024),
        /**
         * Plain gRPC and Connect unary ForwardSoap calls served by eProxy's fast path built from
         * Connect's parts (src/rpc/forward-soap-fast-path.ts); false: every call through Connect.
         */
        forwardSoapFastPath: z.boolean().default(true),
        maxHeaderBytes: z
          .number()
          .int()
          .positive()
          .default(16 * 1024),
        shutdownGraceMs: positiveMs.default(10_000),
        /**
         * On SIGTERM, how long readiness is off (503, NOT_SERVING) while requests are still served,
         * before the listener stops: the time load balancers need to notice (e.g. 5000 behind
         * Kubernetes endpoints). The grace period for in-flight requests starts after it.
         */
        drainDelayMs: z.number().int().nonnegative().max(60_000).default(0),
        /** Processes serving the listener (node:cluster); default the number of CPUs. See cluster.ts. */
        workers: z.number().int().min(1).max(256).optional(),
        /**
         * HTTP/2 flow-control windows eProxy grants callers (RFC 9113 §6.9): at the 64 KiB default a
         * large upload stalls on WINDOW_UPDATE round trips. Per stream and per connection.
         */
        http2: z
          .object({
            streamWindowBytes: z
              .number()
              .int()
              .min(65_535)
              .max(2 ** 31 - 1)
              .default(1024 * 1024),
            connectionWindowBytes: z
              .number()
              .int()
              .min(65_535)
              .max(2 ** 31 - 1)
              .default(8 * 1024 * 1024),
          })
          .strict()
          .default({ streamWindowBytes: 1024 * 1024, connectionWindowBytes: 8 * 1024 * 1024 }),
        /**
         * Relayed body bytes after which eProxy asks V8 for a young-generation collection, which frees
         * the socket read buffers of what was already relayed (src/infra/reclaim.ts): bounds the memory
         * a large streamed upload takes. Only when Node runs with `--expose-gc` (command line or
         * `NODE_OPTIONS`): eProxy sets no V8 flag itself. 0 turns it off.
         */
        reclaimEveryBytes: z
          .number()
          .int()
          .min(0)
          .default(4 * 1024 * 1024),
        trustedProxies: z.array(z.string()).default([]),
        /**
         * In-network listener (off by default): cleartext HTTP/1.1 and h2c for modules inside a
         * private network, API keys only (no TLS, so no client certificate). Bind it to a private
         * address; eProxy warns at start when it is public or a wildcard.
         */
        internalListener: z
          .object({ listenAddress: z.string().min(1), port: port.default(8080) })
          .strict()
          .nullable()
          .default(null),
      })
      .strict(),
    psc: z
      .object({
        discoveryUrl: httpsUrl,
        endpoints: pscEndpoints,
        caFile: filePath.optional(),
        scope: z.string().default("openid scope_all"),
        acrValues: z.enum(["eidas1", "eidas2", "eidas3"]).default("eidas1"),
        clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
        timeoutMs: positiveMs.default(10_000),
      })
      .strict(),
    clients: z.array(clientSchema).default([]),
    teleservices: z.array(teleserviceSchema).default([]),
    sessions: z
      .object({
        idleSeconds: z
          .number()
          .int()
          .positive()
          .max(30 * 60)
          .default(30 * 60),
        absoluteSeconds: z
          .number()
          .int()
          .positive()
          .max(4 * 3600)
          .default(4 * 3600),
        refreshBeforeExpirySeconds: z.number().int().nonnegative().max(100).default(20),
      })
      .strict()
      .default({ idleSeconds: 1800, absoluteSeconds: 14400, refreshBeforeExpirySeconds: 20 }),
    stores: z
      .object({
        sessions: sessionStoreSchema.default({ kind: "memory" }),
        /** Key ring for values at rest (AES-256-GCM); required with Redis. */
        encryption: z
          .object({
            keys: z.array(encryptionKeySchema).min(1),
            activeKeyId: z.string(),
            retiredKeyIds: z.array(z.string()).default([]),
          })
          .strict()
          .refine((e) => e.keys.some((k) => k.id === e.activeKeyId), {
            message: "activeKeyId must name one of keys",
            path: ["activeKeyId"],
          })
          .optional(),
        mongodbUrl: z
          .string()
          .regex(/^mongodb(\+srv)?:\/\//, "must be a mongodb:// URL")
          .optional(),
        /** How often the clients registered in MongoDB are reloaded. */
        clientsRefreshSeconds: z.number().int().positive().max(3600).default(30),
      })
      .strict()
      .default({ sessions: { kind: "memory" }, clientsRefreshSeconds: 30 }),
    traces: z
      .object({
        retentionDays: z.number().int().positive().default(365),
        /** Default: `<stateDir>/traces.spool`. */
        spoolFile: filePath.optional(),
        spoolMaxBytes: z
          .number()
          .int()
          .positive()
          .default(256 * 1024 * 1024),
        /** JSON-lines file of every trace when there is no MongoDB. */
        /** Default: `<stateDir>/traces.jsonl`. */
        file: filePath.optional(),
        /** Clients that may verify the whole trace record (`GET /traces/verify`, `VerifyTraces`). */
        auditors: z.array(z.string()).default([]),
      })
      .strict()
      .default({ retentionDays: 365, spoolMaxBytes: 256 * 1024 * 1024, auditors: [] }),
    /**
     * Writable directory for the state kept on disk (the trace spool, the JSON-lines traces):
     * `/var/lib/eproxy` in the image (EPROXY_STATE_DIR); relative paths are against the config file.
     */
    stateDir: filePath.default(".eproxy"),
    alerts: z
      .object({
        /** CIBA failures (denied, expired, refused) per professional, across clients. */
        cibaFailures: thresholdSchema.nullable().default({ max: 5, windowSeconds: 900, block: true }),
        /** Relayed calls per session. */
        relaysPerSession: thresholdSchema.nullable().default({ max: 600, windowSeconds: 60, block: true }),
      })
      .strict()
      .default({
        cibaFailures: { max: 5, windowSeconds: 900, block: true },
        relaysPerSession: { max: 600, windowSeconds: 60, block: true },
      }),
    /** The admin listener (`/metrics`): off unless `port` is set; loopback unless told otherwise. */
    admin: z
      .object({
        listenAddress: z.string().min(1).default("127.0.0.1"),
        port: port.optional(),
      })
      .strict()
      .default({ listenAddress: "127.0.0.1" }),
    /** OpenTelemetry tracing: off unless `otlpEndpoint` is set. */
    tracing: z
      .object({
        /** OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. */
        otlpEndpoint: z.url(),
        serviceName: z.string().min(1).default("eproxy"),
        /** Share of new traces sampled (a caller's sampled flag is followed). */
        sampleRatio: z.number().min(0).max(1).default(1),
        /** Extra headers of the export requests (e.g. an authorization for a collector). */
        headers: z.record(z.string(), z.string()).default({}),
        batchDelayMs: positiveMs.default(1_000),
        exportTimeoutMs: positiveMs.default(10_000),
      })
      .strict()
      .optional(),
    log: z
      .object({
        level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        /** Lines gathered before one write to standard output (0: a write per line); flushed every 250 ms and at exit. */
        bufferBytes: z.number().int().min(0).max(8192).default(4096),
      })
      .strict()
      .default({ level: "info", bufferBytes: 4096 }),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.clients.forEach((cl, i) => {
      if (seen.has(cl.id))
        ctx.addIssue({ code: "custom", message: `duplicate client id ${cl.id}`, path: ["clients", i, "id"] });
      seen.add(cl.id);
    });
    if (c.stores.sessions.kind === "redis" && !c.stores.encryption) {
      ctx.addIssue({
        code: "custom",
        message: "required when sessions are in Redis: tokens are never stored in clear",
        path: ["stores", "encryption"],
      });
    }
    if (c.admin.port !== undefined && c.admin.port !== 0 && c.admin.port === c.server.port) {
      ctx.addIssue({
        code: "custom",
        message: "the admin listener needs its own port, not the public one",
        path: ["admin", "port"],
      });
    }
    const services = new Set(c.teleservices.map((t) => t.name));
    c.clients.forEach((cl, i) => {
      cl.allowedServices.forEach((s, j) => {
        if (!services.has(s)) {
          ctx.addIssue({
            code: "custom",
            message: `unknown teleservice ${s}`,
            path: ["clients", i, "allowedServices", j],
          });
        }
      });
    });
  });

/** The configuration after validation and defaults (`server.publicBaseUrl` and the trace files always set). */
export type Config = z.infer<typeof configSchema> & {
  server: z.infer<typeof configSchema>["server"] & { publicBaseUrl: string };
  traces: z.infer<typeof configSchema>["traces"] & { spoolFile: string; file: string };
};
/** One configured client (a business backend, identified by its certificate CN). */
export type ClientConfig = Config["clients"][number];
/** One configured teleservice. */
export type TeleserviceConfig = Config["teleservices"][number];

/** Thrown when the configuration cannot be read or is invalid; the message names every faulty key. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Environment variables that override keys of the file (secrets and URLs), from `config-env.ts`. */
export const ENV_OVERRIDES: Record<string, string[]> = Object.fromEntries(
  ENV_VARIABLES.map((v) => [v.name, [...v.path]]),
);

function setPath(obj: Record<string, unknown>, keys: string[], value: unknown): void {
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof cur[k] !== "object" || cur[k] === null) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1] as string] = value;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

const FILE_KEYS = new Set([
  "certFile",
  "keyFile",
  "clientCaFile",
  "caFile",
  "pkcs12File",
  "pkcs12PassphraseFile",
  "clientSecretFile",
  "signingKeyFile",
  "file",
  "spoolFile",
  "stateDir",
]);

function resolveFiles(o: unknown, baseDir: string): void {
  if (Array.isArray(o)) {
    for (const v of o) resolveFiles(v, baseDir);
  } else if (o && typeof o === "object") {
    const rec = o as Record<string, unknown>;
    for (const [k, v] of Object.entries(rec)) {
      if (FILE_KEYS.has(k) && typeof v === "string") rec[k] = path.resolve(baseDir, v);
      else resolveFiles(v, baseDir);
    }
  }
}

/** Formats zod issues as `path.to.key[0]: reason` lines. */
function formatIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const key = i.path.reduce<string>(
        (acc, p) => (typeof p === "number" ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)),
        "",
      );
      return `  - ${key || "(root)"}: ${i.message}`;
    })
    .join("\n");
}

/**
 * Validates a raw configuration object (as parsed from YAML), applies environment overrides,
 * resolves file paths against `baseDir`, and returns it frozen.
 */
export function parseConfig(
  raw: unknown,
  env: NodeJS.ProcessEnv = {},
  baseDir = process.cwd(),
): Readonly<Config> {
  const obj = (raw && typeof raw === "object" ? structuredClone(raw) : {}) as Record<string, unknown>;
  for (const [name, keys] of Object.entries(ENV_OVERRIDES)) {
    const v = env[name];
    if (v === undefined || v === "") continue;
    if (name === "EPROXY_PORT" || name === "EPROXY_ADMIN_PORT") setPath(obj, keys, Number(v));
    else if (name === "EPROXY_REDIS_URL") setPath(obj, keys, { kind: "redis", url: v });
    else setPath(obj, keys, v);
  }
  const result = configSchema.safeParse(obj);
  if (!result.success) {
    throw new ConfigError(`invalid configuration:\n${formatIssues(result.error)}`);
  }
  resolveFiles(result.data, baseDir);
  const data = result.data as Config;
  data.traces.spoolFile ??= path.join(data.stateDir, "traces.spool");
  data.traces.file ??= path.join(data.stateDir, "traces.jsonl");
  data.server.publicBaseUrl = (data.server.publicBaseUrl ?? `https://localhost:${data.server.port}`).replace(
    /\/+$/,
    "",
  );
  return deepFreeze(data);
}

/** Reads, validates and freezes the configuration file named by `file` or `EPROXY_CONFIG`. */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const name = file ?? env[CONFIG_FILE_VARIABLE];
  if (!name)
    throw new ConfigError(`no configuration file: pass --config FILE or set ${CONFIG_FILE_VARIABLE}`);
  let text: string;
  try {
    text = readFileSync(name, "utf8");
  } catch (err) {
    throw new ConfigError(
      `cannot read configuration file ${name}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`configuration file ${name} is not valid YAML: ${(err as Error).message}`);
  }
  return parseConfig(raw, withFileVariables(env), path.dirname(path.resolve(name)));
}

/**
 * `EPROXY_X_FILE` names a file holding the value of the override `EPROXY_X` (Docker and Kubernetes
 * secrets are files): URLs with credentials never sit in the environment or the configuration.
 */
function withFileVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const name of Object.keys(ENV_OVERRIDES)) {
    const file = env[`${name}_FILE`];
    if (!file || env[name]) continue;
    try {
      out[name] = readFileSync(file, "utf8").trim();
    } catch (err) {
      throw new ConfigError(
        `${name}_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
  }
  return out;
}

/** Reads the process environment once, for the CLI (the only place process.env is read). */
export function processEnv(): NodeJS.ProcessEnv {
  return process.env;
}
