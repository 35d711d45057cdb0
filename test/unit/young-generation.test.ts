/**
 * When `eproxy serve` replaces itself to set V8's young generation (src/young-generation.ts).
 */
import { describe, expect, it } from "vitest";
import { semiSpaceFlagGiven, youngGenerationPlan } from "../../src/young-generation.ts";

const proc = {
  execPath: "/usr/bin/node",
  execArgv: ["--trace-gc"],
  argv: ["/usr/bin/node", "/app/bin/eproxy.js", "serve", "--config", "/etc/eproxy/eproxy.yaml"],
  env: {},
  canReplace: true,
};

describe("server.maxSemiSpaceMiB", () => {
  it("replaces the process with the flag first, node's own flags kept, then the same script and arguments", () => {
    expect(youngGenerationPlan(16, proc)).toEqual({
      action: "replace",
      args: [
        "/usr/bin/node",
        "--max-semi-space-size=16",
        "--trace-gc",
        "/app/bin/eproxy.js",
        "serve",
        "--config",
        "/etc/eproxy/eproxy.yaml",
      ],
    });
  });

  it.each([
    ["0 (V8's own sizing)", 0, proc],
    ["the flag on node's command line", 16, { ...proc, execArgv: ["--max-semi-space-size=32"] }],
    [
      "the flag in NODE_OPTIONS",
      16,
      { ...proc, env: { NODE_OPTIONS: "--no-warnings --max-semi-space-size 8" } },
    ],
    ["a process already replaced", 16, { ...proc, env: { EPROXY_SEMI_SPACE_APPLIED: "1" } }],
    ["no process.execve", 16, { ...proc, canReplace: false }],
  ])("keeps the process with %s", (_name, mib, p) => {
    expect(youngGenerationPlan(mib, p).action).toBe("keep");
  });

  it("reads the flag, not a look-alike", () => {
    expect(semiSpaceFlagGiven(["--max-semi-space-size-x=1"], {})).toBe(false);
    expect(semiSpaceFlagGiven([], { NODE_OPTIONS: "--max-old-space-size=512" })).toBe(false);
    expect(semiSpaceFlagGiven(["--max-semi-space-size", "16"], {})).toBe(true);
  });
});
