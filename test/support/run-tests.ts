/**
 * `npm test`: runs every tier (unit, int, e2e) with vitest and ends with one summary line,
 * `N passed, N failed, N skipped`, followed by the tiers that could not run here and the groups of
 * tests that were skipped, if any (`.ci/run` reads that line). Servers the tiers need are started by the tests' global setup, which
 * says loudly when a tier cannot run and writes which for this summary.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import type { SkippedTier } from "./global-setup.ts";

const out = path.resolve(".ci/out/vitest.json");
const tiers = path.resolve(".ci/out/tiers.json");
mkdirSync(path.dirname(out), { recursive: true });
rmSync(tiers, { force: true });
const args = [
  "run",
  "--reporter=default",
  "--reporter=json",
  `--outputFile.json=${out}`,
  ...process.argv.slice(2),
];
const r = spawnSync("vitest", args, {
  stdio: "inherit",
  shell: false,
  env: { ...process.env, EPROXY_TIER_REPORT: tiers },
});

interface Report {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: {
    name: string;
    assertionResults: { status: string; ancestorTitles: string[]; title: string }[];
  }[];
}

/** The groups of skipped tests (file and outermost describe), so that the summary says what did not run. */
function skippedGroups(report: Report): string[] {
  const groups = new Set<string>();
  for (const file of report.testResults) {
    for (const a of file.assertionResults) {
      if (a.status === "passed" || a.status === "failed") continue;
      groups.add(`${path.basename(file.name)} › ${a.ancestorTitles[0] ?? a.title}`);
    }
  }
  return [...groups];
}
let passed = 0;
let failed = 0;
let skipped = 0;
let groups: string[] = [];
try {
  const report = JSON.parse(readFileSync(out, "utf8")) as Report;
  passed = report.numPassedTests;
  failed = report.numFailedTests;
  skipped = report.numPendingTests + report.numTodoTests;
  groups = skippedGroups(report);
} catch {
  failed = 1;
}
if (r.status !== 0 && failed === 0) failed = 1;
let skippedTiers: SkippedTier[] = [];
try {
  skippedTiers = (JSON.parse(readFileSync(tiers, "utf8")) as { skipped: SkippedTier[] }).skipped;
} catch {
  // No global setup ran (no test selected): no tier to name.
}
// The tiers the global setup could not start, then the skipped groups of tests (a few, then a count).
const notes = [
  ...skippedTiers.map((t) => `${t.tier} tier skipped: ${t.reason}`),
  ...groups.slice(0, 4).map((g) => `skipped: ${g}`),
  ...(groups.length > 4 ? [`${groups.length - 4} more skipped groups`] : []),
];
const named = notes.length ? ` (${notes.join("; ")})` : "";
process.stdout.write(`${passed} passed, ${failed} failed, ${skipped} skipped${named}\n`);
process.exit(failed === 0 && r.status === 0 ? 0 : 1);
