import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { createReclaimer, UNCOUNTED_BODY_BYTES } from "../../src/infra/reclaim.ts";

describe("reclaimer", () => {
  function probed() {
    const calls: unknown[] = [];
    let finish: () => void = () => {};
    const state = { marking: false };
    const collect = ((opts: unknown) => {
      calls.push(opts);
      return new Promise<void>((r) => {
        finish = r;
      });
    }) as unknown as NodeJS.GCFunction;
    const told = createReclaimer(100, { collect, marking: () => state.marking }) as (
      n: number,
      body: number,
    ) => void;
    // Chunks of a large body, well past its uncounted head.
    const reclaim = (n: number) => told(n, 10 * UNCOUNTED_BODY_BYTES);
    return { calls, state, told, reclaim, finish: () => finish() };
  }

  it("asks for an asynchronous young-generation collection every `everyBytes`, one at a time", async () => {
    const p = probed();
    p.reclaim(60);
    expect(p.calls).toHaveLength(0);
    p.reclaim(60);
    expect(p.calls).toEqual([{ type: "minor", execution: "async" }]);
    p.reclaim(500); // one is running: counted, not asked
    expect(p.calls).toHaveLength(1);
    p.finish();
    await new Promise((r) => setImmediate(r));
    p.reclaim(1);
    expect(p.calls).toHaveLength(2);
  });

  it("counts only what lies past each body's first UNCOUNTED_BODY_BYTES: small calls never ask", () => {
    const p = probed();
    // Thousands of 7 KB calls (2 KB in, 5 KB out): nothing counts.
    for (let i = 0; i < 5000; i++) {
      p.told(2048, 2048);
      p.told(5120, 5120);
    }
    expect(p.calls).toHaveLength(0);
    // A chunk straddling the head of a large body counts for its part past the head only.
    p.told(64 * 1024, UNCOUNTED_BODY_BYTES + 60);
    expect(p.calls).toHaveLength(0);
    p.told(64 * 1024, UNCOUNTED_BODY_BYTES + 60 + 64 * 1024);
    expect(p.calls).toHaveLength(1);
  });

  it("waits while V8 marks the old generation, then collects at the next chunk", () => {
    const p = probed();
    p.state.marking = true;
    p.reclaim(100);
    p.reclaim(50);
    expect(p.calls).toHaveLength(0);
    p.state.marking = false;
    p.reclaim(1);
    expect(p.calls).toHaveLength(1);
  });

  it("collects during a marking anyway once twice `everyBytes` were relayed (large uploads keep their bound)", () => {
    const p = probed();
    p.state.marking = true;
    p.reclaim(150);
    expect(p.calls).toHaveLength(0);
    p.reclaim(50);
    expect(p.calls).toHaveLength(1);
  });

  it("is off at 0, and off when Node does not expose gc (eProxy sets no V8 flag itself)", () => {
    expect(createReclaimer(0)).toBeUndefined();
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe("undefined");
    expect(createReclaimer(1024)).toBeUndefined();
  });

  it("runs a real young-generation collection when Node runs with --expose-gc", () => {
    const script = `
      import { constants, PerformanceObserver } from "node:perf_hooks";
      import { createReclaimer, UNCOUNTED_BODY_BYTES } from ${JSON.stringify(path.resolve("src/infra/reclaim.ts"))};
      const obs = new PerformanceObserver((list) => {
        if (list.getEntries().some((e) => e.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR)) {
          console.log("minor");
          process.exit(0);
        }
      });
      obs.observe({ entryTypes: ["gc"] });
      const reclaim = createReclaimer(1024);
      if (typeof reclaim !== "function") { console.log("off"); process.exit(1); }
      reclaim(4096, UNCOUNTED_BODY_BYTES + 4096);
      setTimeout(() => { console.log("none"); process.exit(1); }, 10_000);
    `;
    const out = execFileSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    expect(out.trim()).toBe("minor");
  });
});
