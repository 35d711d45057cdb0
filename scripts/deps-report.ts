/**
 * `npm run deps:report [-- --out FILE]`: the freshness of eProxy's direct dependencies (requirement
 * 102-1, dependency obsolescence) from `npm outdated --json` (a registry look-up per package), written
 * between the markers of docs/dev/dependencies.md (or to FILE). Majors behind come first: they are
 * the ones a routine update does not bring.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

const BEGIN = "<!-- deps:begin (npm run deps:report) -->";
const END = "<!-- deps:end -->";

interface Outdated {
  current?: string;
  wanted?: string;
  latest?: string;
}

const { values } = parseArgs({ options: { out: { type: "string" } } });
const target = values.out ?? "docs/dev/dependencies.md";
const pkg = JSON.parse(readFileSync("package.json", "utf8")) as {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
};

const npm = spawnSync("npm", ["outdated", "--json"], { encoding: "utf8", timeout: 300_000 });
let outdated: Record<string, Outdated | Outdated[]>;
try {
  outdated = JSON.parse(npm.stdout || "{}");
} catch {
  process.stderr.write(`npm outdated printed no JSON: ${npm.stderr}\n`);
  process.exit(1);
}
if ("error" in outdated) {
  process.stderr.write(`npm outdated failed: ${JSON.stringify(outdated.error)}\n`);
  process.exit(1);
}

const major = (v: string | undefined) => Number(/^(\d+)/.exec(v ?? "")?.[1] ?? Number.NaN);
/** Compares dotted numeric versions (pre-release suffixes ignored). */
function compare(a: string, b: string): number {
  const pa = a.split(/[.-]/).map(Number);
  const pb = b.split(/[.-]/).map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const rows: Array<{
  name: string;
  kind: string;
  installed: string;
  latest: string;
  status: string;
  rank: number;
}> = [];
for (const [kind, deps] of [
  ["production", pkg.dependencies ?? {}],
  ["development", pkg.devDependencies ?? {}],
] as const) {
  for (const [name, spec] of Object.entries(deps)) {
    const o = outdated[name];
    const info = Array.isArray(o) ? o[0] : o;
    const installed = info?.current ?? spec.replace(/^[\^~]/, "");
    const latest = info?.latest ?? installed;
    let status = "current";
    let rank = 3;
    if (info?.latest && compare(latest, installed) < 0) {
      status = "installed is newer than the registry's `latest` tag";
      rank = 2;
    } else if (major(latest) > major(installed)) {
      status = `**${major(latest) - major(installed)} major(s) behind**`;
      rank = 0;
    } else if (compare(latest, installed) > 0) {
      status = "minor/patch behind";
      rank = 1;
    }
    rows.push({ name, kind, installed, latest, status, rank });
  }
}
rows.sort((a, b) => a.rank - b.rank || b.kind.localeCompare(a.kind) || a.name.localeCompare(b.name));
const majors = rows.filter((r) => r.rank === 0);
const registry = spawnSync("npm", ["config", "get", "registry"], { encoding: "utf8" }).stdout.trim();

const table = [
  BEGIN,
  "",
  `Generated on ${new Date().toISOString().slice(0, 10)} from \`npm outdated --json\` against ${registry}.`,
  "",
  majors.length === 0
    ? "**Outdated majors: none.**"
    : `**Outdated majors: ${majors.map((r) => `\`${r.name}\` (${r.installed} → ${r.latest})`).join(", ")}.**`,
  "",
  "| package | dependency | installed | registry latest | status |",
  "|---|---|---|---|---|",
  ...rows.map((r) => `| \`${r.name}\` | ${r.kind} | ${r.installed} | ${r.latest} | ${r.status} |`),
  "",
  END,
].join("\n");

const before = existsSync(target) ? readFileSync(target, "utf8") : "";
const i = before.indexOf(BEGIN);
const j = before.indexOf(END);
const next =
  i >= 0 && j > i
    ? `${before.slice(0, i)}${table}${before.slice(j + END.length)}`
    : `${before}${before ? "\n" : ""}${table}\n`;
writeFileSync(target, next);
process.stdout.write(`${rows.length} direct dependencies, ${majors.length} major(s) behind -> ${target}\n`);
