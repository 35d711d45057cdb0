/**
 * The relayed call's stream stages are plain iterator objects, never async generators: measured
 * with bench:compare and bench/minimal-relay.ts, one async generator stage per call made ~14 % of
 * every call's allocations survive young-generation collections until the next full one (7–16 MB
 * promoted per scavenge, 10–20 ms pauses) and cost ~30–90 % more CPU per call. This guard keeps a
 * refactoring from bringing one back without a measurement.
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const HOT_PATH = [
  "src/relay/relay.ts",
  "src/relay/soap-sniff.ts",
  "src/rest/relay-routes.ts",
  "src/rpc/relay-service.ts",
];
const GENERATOR = /async\s*\*|async\s+function\s*\*/;

describe("relay hot path", () => {
  it.each(HOT_PATH)("%s has no async generator", (file) => {
    const code = readFileSync(file, "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/\/\/.*$/gm, "");
    expect(code).not.toMatch(GENERATOR);
  });

  it("the check finds one", () => {
    expect("const a = async function* () {}").toMatch(GENERATOR);
    expect("  async *[Symbol.asyncIterator]() {").toMatch(GENERATOR);
  });
});

/**
 * Per-call hashing is one-shot (`crypto.hash`): a `createHash` object is a native object with a weak
 * handle, and under HTTP/2 those survived young collections and were cleared in full collections'
 * final pause (a bare HTTP/2 server hashing once per call: weak-handle clearing 0 → 15 ms per 150,000
 * calls, `--trace-gc-nvp`).
 */
describe("per-call hashing", () => {
  it.each(["src/auth/sessions.ts", "src/auth/api-keys.ts", "src/trace/traces.ts"])(
    "%s hashes without a Hash object",
    (file) => {
      expect(readFileSync(file, "utf8")).not.toMatch(/createHash\s*\(/);
    },
  );
});

/**
 * No V8 flag is set at run time (`v8.setFlagsFromString`: Node's documentation says behaviour after
 * it is undefined, it may crash): a V8 feature eProxy uses (the reclaimer's `gc`) is the operator's
 * choice on Node's command line or in NODE_OPTIONS.
 */
describe("V8 flags", () => {
  it("src/ never sets one at run time", () => {
    const offenders = readdirSync("src", { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .filter((f) => /setFlagsFromString/.test(readFileSync(`src/${f}`, "utf8")));
    expect(offenders).toEqual([]);
  });
});
