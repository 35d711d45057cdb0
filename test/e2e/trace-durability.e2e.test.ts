/**
 * The durability promise, from the outside: `eproxy serve` with traces in MongoDB (FerretDB) relays a
 * steady INSi load from the sandbox simulators, is killed with SIGKILL, started again, then stopped
 * with SIGTERM under load. Every relay answered 200 is looked up among the SEND traces: a planned
 * stop loses none; a crash loses only the last moments before it (the writer's batch interval, not
 * seconds); and `eproxy traces verify` passes the range — a chain cut by the crash is no finding.
 * `npm run bench:trace-durability` runs the same with more load and rounds, for the figures.
 */
import { describe, expect, inject, it } from "vitest";
import { runDurability } from "../../bench/trace-durability.ts";

const mongoUrl = inject("mongoUrl");

describe.skipIf(!mongoUrl)("trace durability", () => {
  it("kill -9 under load loses only the last moments; SIGTERM loses nothing; the record verifies", async () => {
    const [crash, planned] = await runDurability({
      mongoUrl: mongoUrl as string,
      stops: ["SIGKILL", "SIGTERM"],
      loadMs: 2_000,
      concurrency: 4,
    });
    if (!crash || !planned) throw new Error("two rounds expected");
    expect(crash.answered).toBeGreaterThan(20);
    // The writer inserts every 250 ms: relays answered seconds before the crash are all traced.
    expect(crash.lostWindowMs).toBeLessThan(2_000);
    expect(crash.verifyExit, crash.verifyOutput).toBe(0);
    expect(planned.answered).toBeGreaterThan(20);
    expect(planned.lost).toBe(0);
    expect(planned.verifyExit, planned.verifyOutput).toBe(0);
  }, 120_000);
});
