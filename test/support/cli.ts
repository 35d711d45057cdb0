/**
 * Runs the real `eproxy` CLI as a child process (Node 24 from node_modules/.bin).
 */
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { freePort } from "../../src/infra/free-port.ts";

export { freePort };

/** The eProxy CLI entry point. */
export const EPROXY_BIN = path.resolve("bin/eproxy.js");

/** A running CLI process with its captured output. */
export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when stdout matches `re`, rejects on exit or after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Starts `eproxy <args>`. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): CliProcess {
  const child = spawn(process.execPath, [EPROXY_BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c;
  });
  child.stderr?.on("data", (c: Buffer) => {
    err += c;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          clearInterval(poll);
          reject(new Error(`timeout waiting for ${re}; stdout=${out} stderr=${err}`));
        }, timeoutMs);
        const poll = setInterval(() => {
          const m = out.match(re);
          if (m) {
            clearInterval(poll);
            clearTimeout(timer);
            resolve(m);
          }
        }, 50);
        exited.then((code) => {
          clearInterval(poll);
          clearTimeout(timer);
          const m = out.match(re);
          if (m) resolve(m);
          else reject(new Error(`exited with ${code} before ${re}; stdout=${out} stderr=${err}`));
        });
      });
    },
  };
}
