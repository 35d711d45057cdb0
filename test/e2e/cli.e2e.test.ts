import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { type CliProcess, freePort, startCli } from "../support/cli.ts";
import { testPki } from "../support/server.ts";

const sh = promisify(execFile);
const started: CliProcess[] = [];
afterAll(async () => {
  for (const p of started) {
    if (p.child.exitCode === null) {
      p.child.kill("SIGTERM");
      await p.exited;
    }
  }
});

describe("eproxy sandbox", () => {
  it("starts with zero configuration and the printed commands reach it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-sandbox-"));
    const port = await freePort();
    const p = startCli(["sandbox", "--port", String(port), "--dir", path.join(dir, "certs")]);
    started.push(p);
    await p.waitFor(/Ctrl-C stops it/);
    expect(existsSync(path.join(dir, "certs", "clients", "lps-demo.pem"))).toBe(true);

    const curlLine = p.stdout().match(/^ {2}(curl .*\/healthz)$/m)?.[1];
    expect(curlLine).toBeDefined();
    const curl = await sh("sh", ["-c", curlLine as string]);
    expect(JSON.parse(curl.stdout)).toEqual({ status: "ok" });

    const list = p.stdout().match(/^ {2}(npx buf curl .*--list-methods.*)$/m)?.[1];
    const listed = await sh("sh", ["-c", list as string]);
    expect(listed.stdout).toContain("eproxy.v1.AuthService/StartCiba");

    const call = p.stdout().match(/^ {2}(npx buf curl .*StartCiba.*)$/m)?.[1];
    expect(call).toBeDefined();
    const answer = await sh("sh", ["-c", call as string]).catch((e: { stdout: string; stderr: string }) => e);
    // The sandbox's AuthService answers (UNIMPLEMENTED until the PSC simulator lands).
    expect(`${answer.stdout}${answer.stderr}`).toMatch(/"code": "unimplemented"/);

    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    expect(p.stderr()).toContain("SIGTERM received: draining");
  });
});

describe("eproxy serve", () => {
  it("refuses a bad configuration file with a message naming the key", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-badconf-"));
    const file = path.join(dir, "eproxy.yaml");
    writeFileSync(
      file,
      "server:\n  port: 99999\n  tls: {certFile: a.pem, keyFile: b.pem}\npsc:\n  discoveryUrl: nope\n",
    );
    const p = startCli(["serve", "--config", file]);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toContain("server.port:");
    expect(p.stderr()).toContain("psc.discoveryUrl:");
    expect(p.stderr()).not.toMatch(/at .*\.ts:\d+/);
  });

  it("serves from a config file given by EPROXY_CONFIG and stops cleanly on SIGTERM", async () => {
    const pki = testPki();
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-conf-"));
    const file = path.join(dir, "eproxy.yaml");
    const port = await freePort();
    writeFileSync(
      file,
      [
        "server:",
        "  listenAddress: 127.0.0.1",
        `  port: ${port}`,
        `  tls: {certFile: ${pki.serverCertFile}, keyFile: ${pki.serverKeyFile}}`,
        "psc:",
        "  discoveryUrl: https://127.0.0.1:9/.well-known/wallet-openid-configuration",
      ].join("\n"),
    );
    const p = startCli(["serve"], { EPROXY_CONFIG: file });
    started.push(p);
    await p.waitFor(/eProxy listening/);
    const { stdout } = await sh("curl", [
      "-s",
      "--http2",
      "--cacert",
      pki.caFile,
      `https://127.0.0.1:${port}/healthz`,
    ]);
    expect(JSON.parse(stdout).status).toBe("ok");
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    expect(p.stdout()).toContain("eProxy stopped");
  });
});

describe("eproxy certs and api-key", () => {
  it("creates a development PKI that openssl verifies", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-certs-"));
    const p = startCli(["certs", "--dir", dir, "--client", "my-lps"]);
    expect(await p.exited).toBe(0);
    const v = await sh("openssl", [
      "verify",
      "-CAfile",
      path.join(dir, "ca.pem"),
      path.join(dir, "clients", "my-lps.pem"),
    ]);
    expect(v.stdout).toContain(": OK");
    const subj = await sh("openssl", [
      "x509",
      "-noout",
      "-subject",
      "-in",
      path.join(dir, "clients", "my-lps.pem"),
    ]);
    expect(subj.stdout).toMatch(/CN\s*=\s*my-lps/);
  });

  it("prints a new API key and its configuration hash", async () => {
    const p = startCli(["api-key"]);
    expect(await p.exited).toBe(0);
    expect(p.stdout()).toMatch(/API key .*: epk_[\w-]{43}\n/);
    expect(p.stdout()).toMatch(/apiKeyHashes: \["sha256:[0-9a-f]{64}"\]/);
  });
});
