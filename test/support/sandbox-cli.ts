/**
 * `eproxy sandbox` started by the real CLI on free ports, and a backend's gRPC clients built from
 * the development PKI it writes (the sandbox console and sandbox-edges tests).
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/eproxy/v1/auth_pb.ts";
import { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import { type CliProcess, freePort, startCli } from "./cli.ts";

/** A sandbox run by the CLI. */
export interface SandboxCli {
  process: CliProcess;
  /** The proxy's URL, as the banner prints it. */
  url: string;
  /** PSC simulator origin (control API). */
  pscOrigin: string;
  /** Where the PKI (and sandbox.yaml) live. */
  certsDir: string;
  ca: string;
  /** gRPC clients of the backend `lps-demo` (client certificate). */
  auth: Client<typeof AuthService>;
  relay: Client<typeof RelayService>;
  /** A line of the banner matching `re` (its first group). */
  line(re: RegExp): string;
  stop(): Promise<number | null>;
}

/** Starts `eproxy sandbox` with `args` on free ports and waits for its banner. */
export async function startSandboxCli(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<SandboxCli> {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-sandbox-"));
  const certsDir = path.join(dir, "certs");
  const ports = ["--port", "--psc-port", "--teleservices-port", "--console-port"];
  let p: CliProcess | undefined;
  // The metrics listener takes the proxy's port + 3, which another program may hold: try other ports.
  for (let attempt = 1; ; attempt++) {
    const portArgs: string[] = [];
    for (const flag of ports) if (!args.includes(flag)) portArgs.push(flag, String(await freePort()));
    p = startCli(["sandbox", ...portArgs, "--dir", certsDir, ...args], env);
    try {
      await p.waitFor(/Ctrl-C stops it/, 60_000);
      break;
    } catch (err) {
      if (attempt >= 3 || !/is already in use/.test(p.stderr())) {
        // Not left running behind a failed start (nobody else holds it).
        if (p.child.exitCode === null) p.child.kill("SIGTERM");
        throw err;
      }
    }
  }
  const out = p.stdout();
  const url = /eProxy sandbox ready on (https:\/\/localhost:\d+)/.exec(out)?.[1] as string;
  const pscOrigin = /PSC simulator on (https:\/\/localhost:\d+)/.exec(out)?.[1] as string;
  const ca = readFileSync(path.join(certsDir, "ca.pem"), "utf8");
  const transport = createGrpcTransport({
    baseUrl: url,
    nodeOptions: {
      ca,
      cert: readFileSync(path.join(certsDir, "clients", "lps-demo.pem")),
      key: readFileSync(path.join(certsDir, "clients", "lps-demo-key.pem")),
    },
  });
  return {
    process: p,
    url,
    pscOrigin,
    certsDir,
    ca,
    auth: createClient(AuthService, transport),
    relay: createClient(RelayService, transport),
    line(re) {
      const m = re.exec(p.stdout());
      if (!m) throw new Error(`no banner line matching ${re}`);
      return m[1] as string;
    },
    async stop() {
      if (p.child.exitCode === null) p.child.kill("SIGTERM");
      return p.exited;
    },
  };
}
