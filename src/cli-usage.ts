/**
 * The command table of `eproxy`: every command with its synopsis, summary and `--help` text. cli.ts
 * prints from it, and docs/reference/cli.md is generated from it (`npm run docs:generate`). It imports
 * nothing heavy: `eproxy --help` stays fast. `clients` keeps its subcommands' help in clients-cli.ts.
 */
import { CONFIG_FILE_VARIABLE, ENV_VARIABLES } from "./config-env.ts";

/** One command of the table. */
export interface CommandSpec {
  /** The command word. */
  name: string;
  /** Its arguments, as shown in the command list. */
  synopsis: string;
  /** What it does, one or two lines of the command list. */
  summary: readonly string[];
  /** Development only: needs the source tree and the development dependencies. */
  development: boolean;
  /** `eproxy <name> --help` (for `clients`, see clients-cli.ts). */
  help: string;
}

/** `serve --help`'s environment paragraph, from the table config.ts applies: it cannot drift. */
function environmentHelp(): string {
  const names = ENV_VARIABLES.map((v) => v.name);
  const lines: string[] = [];
  let line = "Environment overrides:";
  for (const [i, name] of names.entries()) {
    const word = ` ${name}${i < names.length - 1 ? "," : "."}`;
    if (line.length + word.length > 104) {
      lines.push(line);
      line = word.trimStart();
    } else line += word;
  }
  lines.push(line);
  return `${lines.join("\n")}\nEach also reads NAME_FILE: a file holding the value (Docker and Kubernetes secrets).\nEPROXY_STATE_DIR is where the trace spool lives; it must be writable.`;
}

/** Every command, in the order of `eproxy --help`. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "serve",
    synopsis: "--config FILE",
    summary: [`run the proxy (or set ${CONFIG_FILE_VARIABLE})`],
    development: false,
    help: `Usage: eproxy serve [--config FILE]

Runs the proxy with the configuration FILE (default: the ${CONFIG_FILE_VARIABLE} environment variable).
${environmentHelp()}
SIGTERM or SIGINT drains and stops it.

Options:
  -c, --config FILE   configuration file (YAML)
  -h, --help          this help

Exit status: 0 stopped cleanly, 1 failure at run time, 2 configuration error (the message names the key).
`,
  },
  {
    name: "doctor",
    synopsis: "--config FILE",
    summary: [
      "check a deployment before go-live: certificates, PSC, authorization",
      "servers, teleservices, Redis, MongoDB, TLS, clock (one verdict a line)",
    ],
    development: false,
    help: `Usage: eproxy doctor [--config FILE] [--client-ca FILE]... [--timeout-ms 5000] [--json]

Checks a deployment as the trust-space referencing needs it, without any business call, and prints
one verdict a line (ok, warn, fail, skip):
  configuration valid and every file it names readable; each client certificate chains to its CA
  (--client-ca), matches its key, has the client id as CN and is not about to expire (warn < 30 days);
  PSC discovery reachable over mTLS and each client accepted by PSC; each token-exchange server and
  teleservice reachable over mTLS (TLS handshake only); Redis and MongoDB reachable with the configured
  credentials and the encryption key ring usable; the listener's TLS settings; clock skew with PSC.

Options:
  -c, --config FILE     configuration file (default: ${CONFIG_FILE_VARIABLE})
  --client-ca FILE      CA certificate(s) the client certificates must chain to (repeatable)
  --timeout-ms N        time limit of each network check (default 5000)
  --json                one JSON object instead of the table
  -h, --help            this help

Exit status: 0 nothing failed (warnings allowed), 1 a check failed, 2 usage error or invalid configuration.
`,
  },
  {
    name: "conformity",
    synopsis: "--url URL --client-id ID --national-id ID ...",
    summary: [
      "rehearse the agency's conformity test against a running eProxy: CIBA",
      "login, signsessiondata relay, signature, logout, traces (a report, exit 0/1)",
    ],
    development: false,
    help: `Usage: eproxy conformity --url URL --client-id ID --national-id ID [options]

Rehearses the agency's conformity test (CIBA only) against a running eProxy, as the user software:
  1. CIBA login of the professional (the push must be approved: the sandbox approves by itself);
  2. the session's proxy_session_id and PSC session_state relayed to the mock teleservice
     (POST /send/<service>/<path>, JSON {nationalId, clientID, proxy_session_id, session_state});
  3. the mock's signature over the session data checked (with --jwks-url or --jwks-file);
  4. logout (DELETE /oauth2/session);
  5. GET /traces over the window shows the login, the SEND and the logout, each with session_state,
     client id and certificate DN, and the SEND's request path.

Options:
  --url URL               eProxy's base URL (e.g. https://localhost:8443)
  --client-id ID          the client (certificate CN) the user software is
  --national-id ID        the professional to log in (a test professional of the platform)
  --ca FILE               CA certificate(s) of eProxy's listener (default: the system's)
  --cert FILE --key FILE  the client's certificate to authenticate to eProxy (mTLS)
  --api-key-file FILE     or its API key, read from FILE (or the EPROXY_API_KEY environment variable)
  --service NAME          teleservice name of the mock in eProxy's configuration (default signsessiondata)
  --path PATH             path after the teleservice name (default apipsc/signsessiondata)
  --jwks-url URL          the mock's public keys (JWKS), to verify its signature (a compact JWS)
  --jwks-ca FILE          CA of the JWKS server (default: --ca); --cert/--key are presented to it too
  --jwks-file FILE        the mock's public keys from a file instead
  --channel MOBILE|CARD   CIBA channel (default MOBILE)
  --binding-message NN    two digits shown to the professional (default: random)
  --timeout-ms N          time limit of each call, the CIBA login included (default 180000)
  --traces-wait-ms N      how long the traces may take to appear after the logout (default 15000)
  --json                  one JSON object instead of the table
  -h, --help              this help

Exit status: 0 every step passed (warnings allowed), 1 a step failed, 2 usage error.
`,
  },
  {
    name: "clients",
    synopsis: "add|list|disable|enable|rotate-key --config FILE ...",
    summary: ["manage the clients registered in MongoDB (list: with the configuration's)"],
    development: false,
    help: "",
  },
  {
    name: "traces",
    synopsis: "verify --config FILE [--from T] [--to T]",
    summary: ["check the trace record in MongoDB: missing, edited or reordered traces"],
    development: false,
    help: `Usage: eproxy traces verify [--config FILE] [--from TIME] [--to TIME] [--json]

Checks the trace record in MongoDB: each writer (one per eProxy process start) chains its traces with
a sequence number and the hash of the previous trace. Reports every trace missing between two stored
ones, edited (its hash or its successor's link does not match) or reordered, by id. A chain that ends
(a stop, a crash) is not a finding.

Options:
  -c, --config FILE   configuration file (default: ${CONFIG_FILE_VARIABLE}); needs stores.mongodbUrl
  --from TIME         start of the range, ISO 8601 (default: the retention period ago)
  --to TIME           end of the range, ISO 8601 (default: now)
  --json              the report as one JSON object
  -h, --help          this help

Exit status: 0 the range is clean, 1 a finding (or MongoDB unreachable), 2 usage or configuration error.
`,
  },
  {
    name: "api-key",
    synopsis: "",
    summary: ["print a new API key and the hash to put in the configuration"],
    development: false,
    help: `Usage: eproxy api-key

Prints a new API key (give it to the backend; shown once) and the hash to put in the configuration
(clients[].apiKeyHashes). Nothing is stored.

Options:
  -h, --help   this help (prints no key)
`,
  },
  {
    name: "sandbox",
    synopsis: "[--port 8443] ...",
    summary: ["development: everything locally with zero configuration"],
    development: true,
    help: `Usage: eproxy sandbox [--port 8443] [--psc-port P] [--teleservices-port P] [--dir certs]
                      [--approve-after-ms 3000] [--strict-misuse-limits]
                      [--withhold-traces TYPE,...] [--console-port P | --no-console]

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
  --console-port N          port of the sandbox console in the browser (default: port + 4)
  --no-console              no sandbox console (the code flow then signs in without a login page)
  -h, --help                this help
`,
  },
  {
    name: "certs",
    synopsis: "[--dir certs] ...",
    summary: ["development: create a PKI (CA, server, client certificates)"],
    development: true,
    help: `Usage: eproxy certs [--dir certs] [--client ID]...

Development only: creates (or reuses) a development PKI in DIR: a CA, a server certificate for
localhost, and one client certificate per --client ID (CN = ID). Needs the development dependencies.

Options:
  --dir DIR       where to write it (default: certs)
  --client ID     a client certificate to create (repeatable; default: the sandbox clients)
  -h, --help      this help
`,
  },
];

/** `eproxy --help`: the command list, rendered from the table. */
export const USAGE = `Usage: eproxy <command> [options]

Commands:
${COMMANDS.map((c) => {
  const head = `  ${c.name.padEnd(9)} ${c.synopsis}`;
  const [first = "", ...rest] = c.summary;
  const pad = " ".repeat(33);
  const lines = head.length < 32 ? [`${head.padEnd(32)} ${first}`] : [head, `${pad}${first}`];
  return [...lines, ...rest.map((l) => `${pad}${l}`)].join("\n");
}).join("\n")}

Options:
  -h, --help                     help (also after any command: eproxy serve --help)
  -v, --version                  version of eProxy and of its contract

Exit status: 0 success, 1 failure at run time, 2 usage or configuration error.
`;

/** `eproxy <command> --help` for the commands whose help lives here (all but `clients`). */
export const COMMAND_USAGE: Readonly<Record<string, string>> = Object.fromEntries(
  COMMANDS.filter((c) => c.help).map((c) => [c.name, c.help]),
);
