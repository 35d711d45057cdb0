/**
 * `npm run audit:prod`: audits the production dependency tree (`npm audit --omit dev --json`) and
 * applies the policy of scripts/audit-policy.ts with the allow-list `.ci/audit-allowlist.json`.
 * Exit status: 0 pass, 1 fail; when the registry's audit endpoint cannot be reached the audit is
 * unavailable: said loudly, exit 0, or 1 with `EPROXY_AUDIT_REQUIRED=1` (where it must run).
 *
 * Options: `--report FILE` reads a saved `npm audit --json` output instead of running npm;
 * `--allowlist FILE`; `--out FILE` also writes the verdict as JSON.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { evaluateAudit, formatVerdict } from "./audit-policy.ts";

const { values } = parseArgs({
  options: { report: { type: "string" }, allowlist: { type: "string" }, out: { type: "string" } },
});
const allowFile = values.allowlist ?? ".ci/audit-allowlist.json";
const allowList = existsSync(allowFile) ? JSON.parse(readFileSync(allowFile, "utf8")) : [];

let text: string;
if (values.report) text = readFileSync(values.report, "utf8");
else {
  const npm = spawnSync("npm", ["audit", "--omit", "dev", "--json"], { encoding: "utf8", timeout: 120_000 });
  text = npm.stdout || npm.stderr || "";
}
let report: unknown;
try {
  report = JSON.parse(text);
} catch {
  report = { message: text.trim().split("\n").slice(-1)[0] || "npm audit printed no JSON" };
}
const verdict = evaluateAudit(report, allowList, new Date());
process.stdout.write(formatVerdict(verdict));
if (values.out) writeFileSync(values.out, `${JSON.stringify(verdict, null, 2)}\n`);
const required = process.env.EPROXY_AUDIT_REQUIRED === "1";
process.exitCode = verdict.status === "fail" || (verdict.status === "unavailable" && required) ? 1 : 0;
