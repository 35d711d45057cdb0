/**
 * Runs once before every tier: creates the development PKI the tests share and starts a real Redis
 * and a real MongoDB-wire server (FerretDB) when they are installed. A tier that cannot run is
 * announced loudly; with EPROXY_REQUIRE_SERVERS=1 (CI) a missing server fails the run instead.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { ensureDevPki } from "../../src/infra/dev-pki.ts";
import { ferretBinary, redisBinary, startFerret, startRedis, type TestServerProcess } from "./servers.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** Directory of the shared test PKI (ca.pem, server.pem, clients/<id>.pem). */
    pkiDir: string;
    /** URL of the shared Redis, or "" when not installed. */
    redisUrl: string;
    /** URL of the shared MongoDB-wire server, or "" when not installed. */
    mongoUrl: string;
    /** Binaries, for tests that start (and stop) servers of their own. */
    redisBin: string;
    ferretBin: string;
  }
}

/** A tier of tests that cannot run here, and why. */
export interface SkippedTier {
  tier: string;
  reason: string;
}

/** Client ids the tests use. */
export const TEST_CLIENT_IDS = ["lps-demo", "lps-other", "lps-registered"];

function banner(lines: string[]): void {
  const bar = "!".repeat(78);
  process.stderr.write(`\n${bar}\n${lines.map((l) => `!! ${l}`).join("\n")}\n${bar}\n\n`);
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-test-"));
  await ensureDevPki(path.join(dir, "pki"), TEST_CLIENT_IDS);
  project.provide("pkiDir", path.join(dir, "pki"));
  const required = process.env.EPROXY_REQUIRE_SERVERS === "1";
  const started: TestServerProcess[] = [];
  const missing: SkippedTier[] = [];

  const redisBin = redisBinary();
  project.provide("redisBin", redisBin ?? "");
  if (redisBin) {
    const r = await startRedis(redisBin, path.join(dir, "redis"));
    started.push(r);
    project.provide("redisUrl", r.url);
  } else {
    project.provide("redisUrl", "");
    missing.push({ tier: "Redis", reason: "redis-server not found (apt-get install -y redis-server)" });
  }
  const ferretBin = ferretBinary();
  project.provide("ferretBin", ferretBin ?? "");
  if (ferretBin) {
    const f = await startFerret(ferretBin, path.join(dir, "ferret"));
    started.push(f);
    project.provide("mongoUrl", f.url);
  } else {
    project.provide("mongoUrl", "");
    missing.push({ tier: "MongoDB", reason: "FerretDB not found (run .ci/install-ferretdb.sh)" });
  }
  const lines = missing.map((m) => `${m.tier} tier SKIPPED: ${m.reason}`);
  if (missing.length) {
    if (required) throw new Error(`EPROXY_REQUIRE_SERVERS=1 but: ${lines.join("; ")}`);
    banner(lines);
  }
  // For the summary line of `npm test` (test/support/run-tests.ts), which names skipped tiers.
  const report = process.env.EPROXY_TIER_REPORT;
  if (report) writeFileSync(report, JSON.stringify({ skipped: missing }));
  return async () => {
    for (const s of started) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
