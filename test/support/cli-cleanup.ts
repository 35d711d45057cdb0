/**
 * The CLI processes a test file starts, stopped after its last test: a failed assertion does not
 * leave a server running into the next file.
 */
import { afterAll } from "vitest";
import type { CliProcess } from "./cli.ts";

/**
 * A list to push started CLI processes on; after all the file's tests, each still running gets
 * `signal` and is awaited.
 */
export function stopAfterAll(signal: NodeJS.Signals = "SIGTERM"): CliProcess[] {
  const started: CliProcess[] = [];
  afterAll(async () => {
    for (const p of started) {
      if (p.child.exitCode === null) {
        p.child.kill(signal);
        await p.exited;
      }
    }
  });
  return started;
}
