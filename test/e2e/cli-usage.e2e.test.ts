import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { freePort, startCli } from "../support/cli.ts";
import { stopAfterAll } from "../support/cli-cleanup.ts";
import { testPki } from "../support/server.ts";

const started = stopAfterAll("SIGKILL");

async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const p = startCli(args, env);
  started.push(p);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Runs the CLI with a hook that records every module it loaded. */
async function loadedModules(args: string[]): Promise<string[]> {
  const log = path.join(mkdtempSync(path.join(tmpdir(), "eproxy-modules-")), "loaded.txt");
  const p = startCli(args, {
    NODE_OPTIONS: `--import ${path.resolve("test/support/module-log-hook.mjs")}`,
    EPROXY_TEST_MODULE_LOG: log,
  });
  started.push(p);
  expect(await p.exited).toBe(0);
  return readFileSync(log, "utf8").split("\n");
}

function tmpConfig(lines: string[]): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "eproxy-conf-")), "eproxy.yaml");
  writeFileSync(file, lines.join("\n"));
  return file;
}

function serverLines(port: number, extra: { keyFile?: string; discoveryUrl?: string } = {}): string[] {
  const pki = testPki();
  return [
    "server:",
    "  listenAddress: 127.0.0.1",
    `  port: ${port}`,
    `  tls: {certFile: ${pki.serverCertFile}, keyFile: ${extra.keyFile ?? pki.serverKeyFile}}`,
    "psc:",
    `  discoveryUrl: ${extra.discoveryUrl ?? "https://127.0.0.1:9/.well-known/wallet-openid-configuration"}`,
  ];
}

describe("eproxy --help and --version", () => {
  it.each([
    ["serve", /^Usage: eproxy serve/],
    ["doctor", /^Usage: eproxy doctor/],
    ["conformity", /^Usage: eproxy conformity/],
    ["api-key", /^Usage: eproxy api-key/],
    ["sandbox", /^Usage: eproxy sandbox/],
    ["certs", /^Usage: eproxy certs/],
    ["clients", /^Usage: eproxy clients <command>/],
    ["clients list", /^Usage: eproxy clients list/],
    ["clients disable", /^Usage: eproxy clients disable/],
    ["clients rotate-key", /^Usage: eproxy clients rotate-key/],
  ])("eproxy %s --help prints its usage and exits 0", async (command, usage) => {
    const { code, stdout, stderr } = await run([...command.split(" "), "--help"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toMatch(usage);
  });

  it("api-key --help prints no key; clients add --help lists every PSC authentication method", async () => {
    const key = await run(["api-key", "--help"]);
    expect(key.code).toBe(0);
    expect(key.stdout).not.toMatch(/epk_/);
    const add = await run(["clients", "add", "-h"]);
    expect(add.code).toBe(0);
    for (const m of ["tls_client_auth", "client_secret_basic", "client_secret_post", "private_key_jwt"]) {
      expect(add.stdout).toContain(m);
    }
    expect(add.stdout).toContain("--signing-key-file");
  });

  it("eproxy --help, help, and no command print the command list", async () => {
    for (const args of [["--help"], ["help"], []]) {
      const { code, stdout } = await run(args);
      expect(code).toBe(0);
      expect(stdout).toMatch(/^Usage: eproxy <command>/);
      expect(stdout).toContain(
        "Exit status: 0 success, 1 failure at run time, 2 usage or configuration error",
      );
    }
    expect((await run(["help", "serve"])).stdout).toMatch(/^Usage: eproxy serve/);
  });

  it("--version prints the package version", async () => {
    const { version } = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    for (const flag of ["--version", "-v"]) {
      const { code, stdout } = await run([flag]);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`^eproxy ${version.replaceAll(".", "\\.")} \\(contract eproxy\\.v1`));
    }
  });

  it("usage errors exit 2 with one line", async () => {
    for (const args of [
      ["frobnicate"],
      ["serve", "--frob"],
      ["api-key", "extra"],
      ["sandbox", "--port", "x"],
    ]) {
      const { code, stderr } = await run(args);
      expect(code, args.join(" ")).toBe(2);
      expect(stderr).toMatch(/^eproxy: /);
      expect(stderr).not.toMatch(/at .*\.ts:\d+/);
    }
  });

  it("--help loads no sandbox code and no package at all", async () => {
    const loaded = await loadedModules(["--help"]);
    expect(loaded.filter((u) => u.includes("/node_modules/"))).toEqual([]);
    expect(loaded.filter((u) => u.includes("/src/sandbox/"))).toEqual([]);
  });
});

describe("eproxy serve: configuration errors name the key and exit 2", () => {
  it("a missing key file", async () => {
    const file = tmpConfig(serverLines(0, { keyFile: "/nonexistent/eproxy-key.pem" }));
    const { code, stderr } = await run(["serve", "--config", file]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      "eproxy: server.tls.keyFile: cannot read /nonexistent/eproxy-key.pem: no such file\n",
    );
  });

  it("a key that is not the certificate's", async () => {
    const pki = testPki();
    const file = tmpConfig(serverLines(0, { keyFile: pki.client("lps-demo").keyFile }));
    const { code, stderr } = await run(["serve", "--config", file]);
    expect(code).toBe(2);
    expect(stderr).toContain("server.tls.keyFile: the private key does not match the certificate");
  });

  it("an http:// PSC discovery URL or token-exchange endpoint", async () => {
    const file = tmpConfig([
      ...serverLines(0, { discoveryUrl: "http://psc.example/.well-known/openid-configuration" }),
      "teleservices:",
      "  - name: insi",
      "    upstreamUrl: https://insi.example/lps",
      "    tokenExchange: {endpoint: http://as.example/token}",
    ]);
    const { code, stderr } = await run(["serve", "--config", file]);
    expect(code).toBe(2);
    expect(stderr).toContain("psc.discoveryUrl: must be an https:// URL");
    expect(stderr).toContain("teleservices[0].tokenExchange.endpoint: must be an https:// URL");
  });

  it("a state directory that cannot be written, and a client certificate that cannot be read", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-state-"));
    const notADir = path.join(dir, "file");
    writeFileSync(notADir, "");
    const file = tmpConfig([
      ...serverLines(0),
      `stateDir: ${notADir}/state`,
      "clients:",
      "  - {id: lps-demo, certFile: missing.pem, keyFile: missing-key.pem}",
    ]);
    const { code, stderr } = await run(["serve", "--config", file]);
    expect(code).toBe(2);
    expect(stderr).toContain(`stateDir: cannot write ${notADir}/state`);
    expect(stderr).toContain("set stateDir (or EPROXY_STATE_DIR) to a writable directory");
    expect(stderr).toMatch(/clients\[0\]\.certFile: cannot read \/.*\/missing\.pem: no such file/);
  });

  it("serves with its spool in EPROXY_STATE_DIR and loads nothing of the sandbox", async () => {
    const port = await freePort();
    const state = mkdtempSync(path.join(tmpdir(), "eproxy-state-"));
    const file = tmpConfig(serverLines(port));
    const log = path.join(state, "loaded.txt");
    const p = startCli(["serve", "--config", file], {
      EPROXY_STATE_DIR: state,
      NODE_OPTIONS: `--import ${path.resolve("test/support/module-log-hook.mjs")}`,
      EPROXY_TEST_MODULE_LOG: log,
    });
    started.push(p);
    await p.waitFor(/eProxy listening/);
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    // The default state directory beside the configuration file was not used.
    expect(existsSync(path.join(path.dirname(file), ".eproxy"))).toBe(false);
    const loaded = readFileSync(log, "utf8").split("\n");
    expect(loaded.some((u) => u.includes("/src/server.ts"))).toBe(true);
    expect(
      loaded.filter((u) => /\/src\/sandbox\/|\/node_modules\/(oidc-provider|koa|@peculiar)\//.test(u)),
    ).toEqual([]);
  });
});
