/**
 * `eproxy doctor --config FILE`: checks a deployment before go-live, as the trust-space referencing
 * asks an integrator to — the configuration, the client certificates, PSC, the authorization servers
 * and teleservices, Redis, MongoDB, the listener's TLS and the clock — and prints one verdict a line.
 * Exit status: 0 nothing failed (warnings allowed), 1 a check failed, 2 usage error or invalid
 * configuration.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError, loadConfig, processEnv } from "../config.ts";
import {
  type CheckRow,
  clientCertificateChecks,
  type DoctorOptions,
  localChecks,
  pscChecks,
  storeChecks,
  teleserviceChecks,
} from "./checks.ts";

type Out = { write(s: string): unknown };

/** Renders the rows as an aligned table with a closing count. */
export function formatTable(rows: readonly CheckRow[]): string {
  const head = { check: "CHECK", verdict: "RESULT", detail: "DETAIL" };
  const w = Math.max(head.check.length, ...rows.map((r) => r.check.length));
  const line = (r: { check: string; verdict: string; detail: string }) =>
    `${r.check.padEnd(w)}  ${r.verdict.toUpperCase().padEnd(6)}  ${r.detail}`.trimEnd();
  return `${[line(head), ...rows.map(line)].join("\n")}\n\n${summary(rows)}\n`;
}

function summary(rows: readonly CheckRow[]): string {
  const n = (v: CheckRow["verdict"]) => rows.filter((r) => r.verdict === v).length;
  const warnings = n("warn");
  return `${rows.length} checks: ${n("ok")} ok, ${warnings} warning${warnings === 1 ? "" : "s"}, ${n("fail")} failed, ${n("skip")} skipped`;
}

/** Runs the doctor; resolves with the exit status. */
export async function runDoctor(argv: string[], out: Out): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: "string", short: "c" },
      "client-ca": { type: "string", multiple: true },
      "timeout-ms": { type: "string" },
      json: { type: "boolean" },
    },
  });
  const timeoutMs = values["timeout-ms"] === undefined ? 5_000 : Number(values["timeout-ms"]);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 120_000) {
    throw new ConfigError(`--timeout-ms: a number of milliseconds (1 to 120000): ${values["timeout-ms"]}`);
  }
  const clientCas = (values["client-ca"] ?? []).map((f) => {
    try {
      return readFileSync(f, "utf8");
    } catch {
      throw new ConfigError(`--client-ca ${f}: cannot be read`);
    }
  });
  const env = processEnv();
  const file = values.config ?? env.EPROXY_CONFIG;
  const emit = (rows: CheckRow[]) => {
    if (values.json) {
      const count = (v: CheckRow["verdict"]) => rows.filter((r) => r.verdict === v).length;
      out.write(
        `${JSON.stringify({ checks: rows, ok: count("ok"), warnings: count("warn"), failed: count("fail"), skipped: count("skip") }, null, 2)}\n`,
      );
    } else out.write(formatTable(rows));
  };
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(values.config, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    emit([{ check: "configuration", verdict: "fail", detail: err.message.replace(/\n\s*/g, " ") }]);
    return 2;
  }
  const opts: DoctorOptions = { clientCas, timeoutMs, env };
  const rows: CheckRow[] = [{ check: "configuration", verdict: "ok", detail: `${file} is valid` }];
  rows.push(...localChecks(config, opts));
  rows.push(...clientCertificateChecks(config, opts));
  // The network checks are independent: run them together, show them in a fixed order.
  const [psc, teleservices, stores] = await Promise.all([
    pscChecks(config, opts),
    teleserviceChecks(config, opts),
    storeChecks(config, opts),
  ]);
  rows.push(...psc, ...teleservices, ...stores);
  emit(rows);
  return rows.some((r) => r.verdict === "fail") ? 1 : 0;
}
