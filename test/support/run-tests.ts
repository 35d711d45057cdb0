/**
 * `npm test`: runs every tier (unit, int, e2e) with vitest and ends with `N passed, N failed`.
 * Servers the tiers need are started by the tests' global setup, which says loudly when a tier
 * cannot run here.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";

const out = path.resolve(".ci/out/vitest.json");
mkdirSync(path.dirname(out), { recursive: true });
const args = [
  "run",
  "--reporter=default",
  "--reporter=json",
  `--outputFile.json=${out}`,
  ...process.argv.slice(2),
];
const r = spawnSync("vitest", args, { stdio: "inherit", shell: false });
let passed = 0;
let failed = 0;
try {
  const report = JSON.parse(readFileSync(out, "utf8")) as { numPassedTests: number; numFailedTests: number };
  passed = report.numPassedTests;
  failed = report.numFailedTests;
} catch {
  failed = 1;
}
if (r.status !== 0 && failed === 0) failed = 1;
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 && r.status === 0 ? 0 : 1);
