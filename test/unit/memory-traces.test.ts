import { describe, expect, it } from "vitest";
import { createMemoryTraceStore } from "../../src/infra/memory-traces.ts";
import type { TraceEvent } from "../../src/trace/traces.ts";

const DAY = 86_400_000;
const event = (i: number): TraceEvent => ({
  id: `e${String(i).padStart(6, "0")}`,
  type: "SEND",
  at: Date.now() - 1000 + i,
  clientId: "c",
  path: "/x".repeat(100),
});
const all = { start: 0, end: Date.now() + DAY, limit: 1_000_000 };

describe("memory trace store", () => {
  it("keeps only the latest events within its byte bound", async () => {
    const size = JSON.stringify(event(0)).length + 1;
    const store = createMemoryTraceStore({ retentionMs: DAY, maxBytes: size * 10 });
    for (let i = 0; i < 100; i += 5) await store.insertMany([0, 1, 2, 3, 4].map((k) => event(i + k)));
    const kept = await store.query(all);
    expect(kept.map((e) => e.id)).toEqual(Array.from({ length: 10 }, (_, k) => event(90 + k).id));
  });

  it("keeps only the latest events within its count bound, and ignores ids it holds", async () => {
    const store = createMemoryTraceStore({ retentionMs: DAY, maxEvents: 3000 });
    for (let i = 0; i < 5000; i += 100) {
      await store.insertMany(Array.from({ length: 100 }, (_, k) => event(i + k)));
    }
    await store.insertMany([event(4999)]);
    const kept = await store.query(all);
    expect(kept).toHaveLength(3000);
    expect(kept[0]?.id).toBe(event(2000).id);
    expect(kept.at(-1)?.id).toBe(event(4999).id);
  });
});
