import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { freePort, startCli } from "../support/cli.ts";
import { stopAfterAll } from "../support/cli-cleanup.ts";
import { startSandboxCli } from "../support/sandbox-cli.ts";
import { testPki } from "../support/server.ts";

const sh = promisify(execFile);
const started = stopAfterAll();

describe("eproxy sandbox", () => {
  it("starts with zero configuration; the printed commands authenticate a professional", async () => {
    const sb = await startSandboxCli(["--approve-after-ms", "500"]);
    started.push(sb.process);
    expect(existsSync(path.join(sb.certsDir, "clients", "lps-demo.pem"))).toBe(true);
    const line = (re: RegExp) => sb.line(re);

    const curl = await sh("sh", ["-c", line(/^ {2}(curl .*\/healthz)$/m)]);
    expect(JSON.parse(curl.stdout)).toEqual({ status: "ok" });
    const listed = await sh("sh", ["-c", line(/^ {2}(npx buf curl .*--list-methods.*)$/m)]);
    expect(listed.stdout).toContain("eproxy.v1.AuthService/StartCiba");

    // The printed gRPC StartCiba line, then the WatchCiba line with the returned id.
    const start = await sh("sh", ["-c", line(/^ {2}(npx buf curl .*StartCiba.*)$/m)]);
    const { authReqId } = JSON.parse(start.stdout);
    expect(authReqId).toBeTruthy();
    const watch = await sh("sh", [
      "-c",
      line(/^ {2}(npx buf curl .*WatchCiba.*)$/m).replace("<authReqId from the answer above>", authReqId),
    ]);
    expect(watch.stdout).toContain('"status": "CIBA_STATUS_APPROVED"');
    expect(watch.stdout).toMatch(/"sessionToken": "eps_[\w.-]+"/);
    expect(watch.stdout).toContain('"familyName": "SANDBOX-MEDECIN"');

    // The printed relay lines, with the session token: an INSi search through /send and ForwardSoap.
    const sessionToken = /"sessionToken": "(eps_[\w.-]+)"/.exec(watch.stdout)?.[1] as string;
    const insi = await sh("sh", [
      "-c",
      line(/^ {2}(curl .*\/send\/insi.*)$/m).replace("<sessionToken>", sessionToken),
    ]);
    expect(insi.stdout).toContain("<insi:CodeCR>00</insi:CodeCR>");
    const forward = await sh("sh", [
      "-c",
      line(/^ {2}(npx buf curl .*ForwardSoap.*)$/m).replace("<sessionToken>", sessionToken),
    ]);
    expect(JSON.parse(forward.stdout)).toMatchObject({ statusCode: 200 });
    expect(Buffer.from(JSON.parse(forward.stdout).body, "base64").toString()).toContain(
      "<insi:CodeCR>00</insi:CodeCR>",
    );

    // The printed blocking REST line signs another professional in: its token relays too ("either answer").
    const restLine = line(/^ {2}(curl .*\/oauth2\/ciba .*)$/m);
    const rest = JSON.parse((await sh("sh", ["-c", restLine])).stdout);
    expect(rest).toMatchObject({ status: "APPROVED", reused: false, session: { clientId: "lps-demo" } });
    expect(rest.session.sessionToken).toMatch(/^eps_/);
    const insi2 = await sh("sh", [
      "-c",
      line(/^ {2}(curl .*\/send\/insi.*)$/m).replace("<sessionToken>", rest.session.sessionToken),
    ]);
    expect(insi2.stdout).toContain("<insi:CodeCR>00</insi:CodeCR>");
    // Asked again, the live session is reused: no push, no token, and the answer says where the token is.
    const again = JSON.parse((await sh("sh", ["-c", restLine])).stdout);
    expect(again).toMatchObject({ status: "APPROVED", reused: true });
    expect(again.session.sessionToken).toBeUndefined();
    expect(again.session.reused).toBeUndefined();
    expect(again.detail).toContain("DELETE /oauth2/session");
    expect(again.detail).toContain("newSession");

    expect(await sb.stop()).toBe(0);
    expect(sb.process.stderr()).toContain("SIGTERM received: draining");
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
    // The log is written out before the exit (flushLogs): the stop line is the last one.
    expect(p.stdout().trim().split("\n").at(-1)).toContain("eProxy stopped");
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
