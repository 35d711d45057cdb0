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

  it("wraps its ring without corrupting or reordering events, whatever their sizes (UTF-8 included)", async () => {
    const capacity = 4096;
    const store = createMemoryTraceStore({ retentionMs: DAY, maxBytes: capacity, maxEvents: 50 });
    const inserted: TraceEvent[] = [];
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 2000; i++) {
      const batch = Array.from({ length: 1 + rand(4) }, (_, k) => ({
        ...event(inserted.length + k),
        // 1- to 3-byte characters: the bound is in UTF-8 bytes, not UTF-16 units.
        path: "/é€x".repeat(rand(120)),
      }));
      inserted.push(...batch);
      await store.insertMany(batch);
      const kept = await store.query(all);
      // The latest events, contiguous, intact, in order; within both bounds; never starved.
      const tail = inserted.slice(inserted.length - kept.length);
      expect(kept).toEqual(tail);
      const bytes = kept.reduce((n, e) => n + Buffer.byteLength(`${JSON.stringify(e)}\n`), 0);
      expect(bytes).toBeLessThanOrEqual(capacity);
      expect(kept.length).toBeLessThanOrEqual(50);
      expect(kept.at(-1)).toEqual(inserted.at(-1));
    }
  });

  it("keeps an event larger than its whole bound only in the file", async () => {
    const store = createMemoryTraceStore({ retentionMs: DAY, maxBytes: 1024 });
    await store.insertMany([event(1), { ...event(2), path: "x".repeat(2000) }, event(3)]);
    expect((await store.query(all)).map((e) => e.id)).toEqual([event(1).id, event(3).id]);
  });
});
