/**
 * `eproxy traces verify`: walks the trace chains stored in MongoDB over a time range and reports
 * every missing, edited or reordered trace by id (exit 1), or a clean range (exit 0).
 */
import { parseArgs } from "node:util";
import { COMMAND_USAGE } from "./cli-usage.ts";
import { ConfigError, loadConfig, processEnv } from "./config.ts";
import { createMongoTraceStore } from "./infra/mongo-traces.ts";
import { type VerifyReport, verifyTraces } from "./trace/verify.ts";

type Out = { write(s: string): unknown };

/** Runs `eproxy traces <command>`; resolves with the exit status. */
export async function runTraces(argv: string[], out: Out = process.stdout): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== "verify") {
    throw new ConfigError(`unknown traces command: ${command}\n\n${COMMAND_USAGE.traces}`);
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: "string", short: "c" },
      from: { type: "string" },
      to: { type: "string" },
      json: { type: "boolean" },
    },
    strict: true,
  });
  const config = loadConfig(values.config, processEnv());
  if (!config.stores.mongodbUrl) {
    throw new ConfigError("traces verify reads the trace chains in MongoDB: stores.mongodbUrl is not set");
  }
  const retentionMs = config.traces.retentionDays * 86_400_000;
  const time = (name: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw new ConfigError(`--${name}: not an ISO 8601 time: ${v}`);
    return t;
  };
  const now = Date.now();
  const start = time("from", values.from, now - retentionMs);
  const end = time("to", values.to, now + 1);
  if (end <= start) throw new ConfigError("--to must be after --from");
  const store = createMongoTraceStore(config.stores.mongodbUrl, { retentionMs, timeoutMs: 5_000 });
  try {
    const report = await verifyTraces((store.chains as NonNullable<typeof store.chains>)(), start, end);
    out.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : render(report));
    return report.clean ? 0 : 1;
  } finally {
    await store.close();
  }
}

function render(r: VerifyReport): string {
  const lines = [
    `trace record ${new Date(r.start).toISOString()} .. ${new Date(r.end).toISOString()}`,
    `  ${r.chains} chain(s), ${r.traces} chained trace(s), ${r.unchained} unchained (written before chaining)`,
  ];
  for (const p of r.problems) {
    lines.push(
      p.kind === "missing"
        ? `  missing    writer ${p.writerId} seq ${p.seq}${(p.count ?? 1) > 1 ? `..${p.seq + (p.count ?? 1) - 1}` : ""}: ${p.detail}`
        : `  ${p.kind.padEnd(10)} ${p.id} (writer ${p.writerId} seq ${p.seq}): ${p.detail}`,
    );
  }
  lines.push(r.clean ? "clean: no trace missing, edited or reordered" : `${r.problems.length} finding(s)`);
  return `${lines.join("\n")}\n`;
}
