import { afterEach, describe, expect, it, vi } from "vitest";
import { type CheckState, createHealth, type Health } from "../../src/health.ts";

let health: Health | undefined;
afterEach(() => {
  health?.close();
  vi.useRealTimers();
});

function probe(initial: CheckState | "throw") {
  const p = { state: initial, calls: 0 };
  return {
    p,
    check: async (): Promise<CheckState> => {
      p.calls++;
      if (p.state === "throw") throw new Error("down");
      return p.state;
    },
  };
}

describe("readiness", () => {
  it("is not ready when a critical dependency is down; only degraded when PSC or traces are", async () => {
    vi.useFakeTimers();
    const store = probe("ok");
    const psc = probe("ok");
    const traces = probe("ok");
    health = createHealth(
      [
        { name: "sessionStore", impact: "critical", check: store.check },
        { name: "psc", impact: "degrading", background: true, check: psc.check },
        { name: "traces", impact: "degrading", check: traces.check },
      ],
      { intervalMs: 5_000 },
    );
    await vi.advanceTimersByTimeAsync(0);
    expect(await health.evaluate()).toEqual({
      ready: true,
      status: "ok",
      checks: { sessionStore: "ok", psc: "ok", traces: "ok" },
    });
    // PSC goes away: seen at the next background check, not on every probe.
    psc.p.state = "throw";
    const callsBefore = psc.p.calls;
    for (let i = 0; i < 10; i++) await health.evaluate();
    expect(psc.p.calls).toBe(callsBefore);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(await health.evaluate()).toMatchObject({
      ready: true,
      status: "degraded",
      checks: { psc: "unavailable" },
    });
    traces.p.state = "degraded";
    expect(await health.evaluate()).toMatchObject({
      ready: true,
      status: "degraded",
      checks: { traces: "degraded" },
    });
    store.p.state = "throw";
    expect(await health.evaluate()).toMatchObject({
      ready: false,
      status: "unavailable",
      checks: { sessionStore: "unavailable" },
    });
  });

  it("times a hanging check out as unavailable", async () => {
    health = createHealth(
      [{ name: "sessionStore", impact: "critical", check: () => new Promise(() => {}) }],
      {
        timeoutMs: 50,
      },
    );
    expect(await health.evaluate()).toMatchObject({ ready: false, checks: { sessionStore: "unavailable" } });
  });

  it("draining flips readiness off at once and tells the listeners", async () => {
    health = createHealth([{ name: "sessionStore", impact: "critical", check: async () => "ok" }]);
    expect((await health.evaluate()).ready).toBe(true);
    const seen: boolean[] = [];
    health.onChange((r) => seen.push(r.ready));
    health.startDraining();
    expect(seen).toEqual([false]);
    expect(await health.evaluate()).toMatchObject({ ready: false, status: "draining" });
  });
});
