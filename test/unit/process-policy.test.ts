/**
 * `eproxy serve`'s process policy, in a child process: an unhandled rejection is logged and the
 * process keeps running; an uncaught exception is logged as fatal and the process exits with 1.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const policy = path.resolve("src/process-policy.ts");

function run(body: string) {
  const script = `
    import { pino } from "pino";
    import { installProcessPolicy } from ${JSON.stringify(policy)};
    const log = pino();
    installProcessPolicy(log, async () => { process.stdout.write("flushed\\n"); });
    ${body}
  `;
  return spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 20_000,
  });
}

const lines = (out: string) =>
  out
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));

describe("process policy", () => {
  it("logs an unhandled rejection and keeps serving", () => {
    const r = run(`
      Promise.reject(new Error("lost promise"));
      setTimeout(() => { process.stdout.write("still serving\\n"); process.exit(0); }, 100);
    `);
    expect(r.status).toBe(0);
    expect(lines(r.stdout)).toContainEqual(
      expect.objectContaining({
        level: 50,
        msg: expect.stringContaining("unhandled promise rejection"),
        err: expect.objectContaining({ message: "lost promise" }),
      }),
    );
    expect(r.stdout).toContain("still serving");
  });

  it("logs an uncaught exception as fatal, writes the log out, exits 1", () => {
    const r = run(`
      setTimeout(() => { throw new Error("broken callback"); }, 10);
      setTimeout(() => { process.stdout.write("still serving\\n"); }, 2_000);
    `);
    expect(r.status).toBe(1);
    expect(lines(r.stdout)).toContainEqual(
      expect.objectContaining({
        level: 60,
        msg: expect.stringContaining("uncaught exception"),
        err: expect.objectContaining({ message: "broken callback" }),
      }),
    );
    expect(r.stdout).toContain("flushed");
    expect(r.stdout).not.toContain("still serving");
  });
});
