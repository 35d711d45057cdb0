/**
 * Replicas (and restarts) share one trace database: each trace store makes the collection's indexes
 * when it first writes, so every store after the first finds them already there. Real FerretDB (the
 * MongoDB-wire server CI runs).
 */
import { describe, expect, inject, it } from "vitest";
import { createMongoTraceStore } from "../../src/infra/mongo-traces.ts";
import type { TraceEvent } from "../../src/trace/traces.ts";

const mongoUrl = inject("mongoUrl");
const DAY = 86_400_000;

function event(id: string): TraceEvent {
  return {
    id,
    at: Date.now(),
    type: "SEND",
    clientId: "lps-demo",
    outcome: "OK",
    correlationId: id,
  } as TraceEvent;
}

describe.skipIf(!mongoUrl)("trace stores of several replicas on one database", () => {
  it("a second and a third store (another replica, a restart) write and read where the first made the indexes", async () => {
    const url = `${mongoUrl}replicas_${Date.now()}`;
    const stores = [1, 2, 3].map(() =>
      createMongoTraceStore(url, { retentionMs: 30 * DAY, timeoutMs: 2_000 }),
    );
    try {
      for (const [i, s] of stores.entries()) await s.insertMany([event(`replica-${i}`)]);
      const seen = await (stores[2] as (typeof stores)[number]).query({
        start: Date.now() - 60_000,
        end: Date.now() + 60_000,
        clientId: "lps-demo",
        limit: 10,
      });
      expect(seen.map((t) => t.id).sort()).toEqual(["replica-0", "replica-1", "replica-2"]);
    } finally {
      for (const s of stores) await s.close();
    }
  });
});
