import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type CliProcess, startCli } from "../support/cli.ts";
import { stopAfterAll } from "../support/cli-cleanup.ts";
import { startSandboxCli } from "../support/sandbox-cli.ts";

/**
 * `eproxy conformity` against `eproxy sandbox`, both real processes: the agency's scenario passes
 * against the sandbox, and fails (exit 1, naming the missing trace) against a sandbox that withholds
 * the logout traces.
 */
const started = stopAfterAll();

/** Starts a sandbox on free ports; resolves with the arguments `eproxy conformity` needs for it. */
async function sandbox(
  extra: string[] = [],
): Promise<{ process: CliProcess; args: string[]; certs: string }> {
  const sb = await startSandboxCli(["--approve-after-ms", "200", ...extra]);
  started.push(sb.process);
  // The command the sandbox prints, as a developer would paste it.
  const printed = sb.line(/^ {2}npx eproxy (conformity .*)$/m);
  return { process: sb.process, args: printed.split(" "), certs: sb.certsDir };
}

async function conformity(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = startCli(args);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

describe("eproxy conformity", () => {
  it("passes the agency's scenario against the sandbox (text and JSON reports)", async () => {
    const { args, process: sb, certs } = await sandbox();
    const text = await conformity(args);
    expect(text.code, `${text.stdout}\n${text.stderr}`).toBe(0);
    expect(text.stdout).toMatch(/^signature\s+OK\s+ES256 JWS by key mock-\w+ over the session data$/m);
    expect(text.stdout).toMatch(/^ {2}logout trace\s+OK\s+DISCONNECT at /m);
    expect(text.stdout).toContain("conformity scenario PASSED");
    // The national id goes to the mock, never to the report.
    expect(text.stdout).not.toContain("899700218896");

    const json = await conformity([...args, "--json"]);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report.ok).toBe(true);
    expect(report.steps.map((s: { step: string; verdict: string }) => `${s.step}:${s.verdict}`)).toEqual([
      "login:ok",
      "session data:ok",
      "relay:ok",
      "signature:ok",
      "logout:ok",
      "traces:ok",
    ]);
    expect(report.traces.map((t: { trace: string; ok: boolean }) => [t.trace, t.ok])).toEqual([
      ["login", true],
      ["send", true],
      ["logout", true],
    ]);

    // As a user software with an API key (no client certificate, so no JWKS from the mTLS-only mock):
    // the signature is then only seen, a warning that does not fail the run.
    const keys = JSON.parse(readFileSync(path.join(certs, "sandbox-api-keys.json"), "utf8"));
    const keyFile = path.join(certs, "lps-demo.api-key");
    writeFileSync(keyFile, keys["lps-demo"].key, { mode: 0o600 });
    const option = (name: string) => args[args.indexOf(name) + 1] as string;
    const byKey = await conformity([
      "conformity",
      ...["--url", option("--url"), "--ca", option("--ca"), "--api-key-file", keyFile],
      ...["--client-id", "lps-demo", "--national-id", "899700218896"],
    ]);
    expect(byKey.code, `${byKey.stdout}\n${byKey.stderr}`).toBe(0);
    expect(byKey.stdout).toMatch(/^signature\s+WARN\s+present, not verified/m);
    expect(byKey.stdout).toContain("conformity scenario PASSED");
    sb.child.kill("SIGTERM");
    await sb.exited;
  });

  it("fails with exit 1 naming the missing trace when the proxy withholds its logout traces", async () => {
    const { args, process: sb } = await sandbox(["--withhold-traces", "DISCONNECT"]);
    const run = await conformity([...args, "--traces-wait-ms", "3000"]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1);
    expect(run.stdout).toMatch(/^traces\s+FAIL\s+logout trace \(DISCONNECT\) missing/m);
    expect(run.stdout).toMatch(/^ {2}login trace\s+OK/m);
    expect(run.stdout).toMatch(/^ {2}send trace\s+OK/m);
    expect(run.stdout).toContain("conformity scenario FAILED (traces)");
    sb.child.kill("SIGTERM");
    await sb.exited;
  });
});
