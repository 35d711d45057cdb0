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

  // One row per server-backed tier: how to find its binary, start it, and what the tests read.
  const tiers = [
    {
      tier: "Redis",
      binary: redisBinary,
      start: startRedis,
      binKey: "redisBin",
      urlKey: "redisUrl",
      missing: "redis-server not found (apt-get install -y redis-server)",
    },
    {
      tier: "MongoDB",
      binary: ferretBinary,
      start: (bin: string, at: string) => startFerret(bin, at),
      binKey: "ferretBin",
      urlKey: "mongoUrl",
      missing: "FerretDB not found (run .ci/install-ferretdb.sh)",
    },
  ] as const;
  for (const t of tiers) {
    const bin = t.binary();
    project.provide(t.binKey, bin ?? "");
    if (bin) {
      const server = await t.start(bin, path.join(dir, t.tier.toLowerCase()));
      started.push(server);
      project.provide(t.urlKey, server.url);
    } else {
      project.provide(t.urlKey, "");
      missing.push({ tier: t.tier, reason: t.missing });
    }
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
