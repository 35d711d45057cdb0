/**
 * Real Redis and MongoDB-wire (FerretDB) servers for the tests, started on free loopback ports.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import net from "node:net";
import { homedir } from "node:os";
import path from "node:path";
import { freePort } from "../../src/infra/free-port.ts";

/** A server process the tests started. */
export interface TestServerProcess {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Starts it again on the same port (for outage tests). */
  restart(): Promise<void>;
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve();
      });
      s.once("error", () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`port ${port} did not open`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

function which(cmd: string): string | undefined {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Path of redis-server, if installed. */
export function redisBinary(): string | undefined {
  return which("redis-server");
}

/** Path of a working FerretDB binary (.ci/bin, PATH or ~/go/bin), if any. */
export function ferretBinary(): string | undefined {
  for (const c of [
    path.resolve(".ci/bin/ferretdb"),
    which("ferretdb"),
    path.join(homedir(), "go/bin/ferretdb"),
  ]) {
    if (!c || !existsSync(c)) continue;
    try {
      execFileSync(c, ["--version"], { stdio: "ignore" });
      return c;
    } catch {
      // A `go install`ed FerretDB without version.txt panics: not usable.
    }
  }
  return undefined;
}

async function supervise(
  start: (port: number) => ChildProcess,
  port: number,
  url: string,
): Promise<TestServerProcess> {
  let child = start(port);
  await waitForPort(port, 20_000);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  };
  return {
    url,
    port,
    stop,
    async restart() {
      await stop();
      child = start(port);
      await waitForPort(port, 20_000);
    },
  };
}

/** Starts redis-server (no persistence) on a free port; `extraArgs` adds options (e.g. --requirepass). */
export async function startRedis(
  bin: string,
  dir: string,
  extraArgs: string[] = [],
): Promise<TestServerProcess> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  return supervise(
    (p) =>
      spawn(
        bin,
        [
          "--port",
          String(p),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--dir",
          dir,
          ...extraArgs,
        ],
        {
          stdio: "ignore",
        },
      ),
    port,
    `redis://127.0.0.1:${port}/0`,
  );
}

/** Starts FerretDB with its SQLite backend on a free port. */
export async function startFerret(bin: string, dir: string): Promise<TestServerProcess> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  return supervise(
    (p) =>
      spawn(
        bin,
        [
          "--handler=sqlite",
          `--sqlite-url=file:${dir}/`,
          `--listen-addr=127.0.0.1:${p}`,
          `--state-dir=${dir}`,
          "--log-level=error",
          "--debug-addr=-",
        ],
        { stdio: "ignore", env: { ...process.env, FERRETDB_TELEMETRY: "disable" } },
      ),
    port,
    `mongodb://127.0.0.1:${port}/`,
  );
}
