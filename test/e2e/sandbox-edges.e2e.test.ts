/**
 * The sandbox's rough edges, as a developer meets them (issue 21): a taken port, the misuse limits,
 * approving and denying by the backend's authReqId, `eproxy doctor` on the sandbox's configuration,
 * a log line for every push.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { Agent, fetch } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { Channel, CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { EPROXY_BIN, freePort, startCli } from "../support/cli.ts";
import { type SandboxCli, startSandboxCli } from "../support/sandbox-cli.ts";

const sh = promisify(execFile);
const running: SandboxCli[] = [];
afterAll(async () => {
  for (const s of running) await s.stop();
});

/** Holds a port the way another program would. */
async function occupy(port: number): Promise<net.Server> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(port, "127.0.0.1", resolve));
  return s;
}

describe("eproxy sandbox, rough edges", () => {
  it("a taken port ends in one line naming the option to change, without a stack trace", async () => {
    for (const [taken, flag] of [
      [0, "--port N"],
      [1, "--psc-port N"],
      [2, "--teleservices-port N"],
    ] as const) {
      const base = await freePort();
      const holder = await occupy(base + taken);
      try {
        const p = startCli([
          "sandbox",
          "--port",
          String(base),
          "--dir",
          path.join("/tmp", `eproxy-taken-${base}`),
        ]);
        expect(await p.exited).toBe(1);
        const lines = p.stderr().trim().split("\n");
        expect(lines, p.stderr()).toHaveLength(1);
        expect(lines[0]).toContain(`port ${base + taken} `);
        expect(lines[0]).toContain("is already in use");
        expect(lines[0]).toContain(flag);
        expect(p.stderr()).not.toMatch(/EADDRINUSE|\n\s+at /);
      } finally {
        holder.close();
      }
    }
  });

  it("approves and denies by the backend's authReqId, logs every push, writes a configuration doctor accepts", async () => {
    const sb = await startSandboxCli(["--approve-after-ms", "600000"]);
    running.push(sb);
    const dispatcher = new Agent({ connect: { ca: sb.ca } });
    const control = (id: string, verb: "approve" | "deny") =>
      fetch(`${sb.pscOrigin}/control/ciba/${encodeURIComponent(id)}/${verb}`, { method: "POST", dispatcher });
    const settle = async (authReqId: string) => {
      let last: CibaStatus | undefined;
      for await (const v of sb.auth.watchCiba({ authReqId })) last = v.status;
      return last;
    };

    const denied = await sb.auth.startCiba({
      clientId: "lps-demo",
      nationalId: "899700218896",
      channel: Channel.CARD,
      bindingMessage: "17",
    });
    expect((await control(denied.authReqId, "deny")).status).toBe(200);
    expect(await settle(denied.authReqId)).toBe(CibaStatus.DENIED);
    expect((await control(denied.authReqId, "deny")).status).toBe(404);

    const approved = await sb.auth.startCiba({
      clientId: "lps-demo",
      nationalId: "899700366240",
      channel: Channel.MOBILE,
      bindingMessage: "42",
    });
    expect((await control(approved.authReqId, "approve")).status).toBe(200);
    expect(await settle(approved.authReqId)).toBe(CibaStatus.APPROVED);

    // One info line per push: professional, channel, binding message (invented sandbox professionals).
    const pushes = sb.process
      .stdout()
      .split("\n")
      .filter((l) => l.includes("sandbox: push sent"))
      .map((l) => JSON.parse(l));
    expect(pushes).toMatchObject([
      {
        level: "info",
        professional: "899700218896 Camille SANDBOX-MEDECIN",
        channel: "CARD",
        bindingMessage: "17",
      },
      {
        level: "info",
        professional: expect.stringMatching(/^899700366240 /),
        channel: "MOBILE",
        bindingMessage: "42",
      },
    ]);

    // The configuration the sandbox runs with, as a file doctor can be pointed at.
    const configFile = sb.line(/^Configuration written to (\S+);/m);
    const written = parseYaml(readFileSync(path.resolve(configFile), "utf8"));
    expect(written.server.port).toBe(Number(new URL(sb.url).port));
    // Relaxed misuse limits: alerts, never a lock-out.
    expect(written.alerts.cibaFailures).toMatchObject({ block: false });
    expect(written.alerts.relaysPerSession).toMatchObject({ block: false });
    const doctor = await sh(
      process.execPath,
      [EPROXY_BIN, "doctor", "--config", configFile, "--client-ca", path.join(sb.certsDir, "ca.pem")],
      { timeout: 60_000 },
    ).catch((e: { stdout: string; code: number }) => e);
    expect(doctor.stdout).toMatch(/0 failed/);
    expect(doctor.stdout).toMatch(/PSC accepts client lps-demo\s+OK/);
  });

  it("--strict-misuse-limits keeps serve's blocking limits", async () => {
    const sb = await startSandboxCli(["--strict-misuse-limits"]);
    running.push(sb);
    const written = parseYaml(readFileSync(path.join(sb.certsDir, "sandbox.yaml"), "utf8"));
    expect(written.alerts.cibaFailures).toMatchObject({ max: 5, windowSeconds: 900, block: true });
    expect(sb.process.stdout()).toContain("Misuse limits: as in serve");
    await sb.stop();
  });
});
