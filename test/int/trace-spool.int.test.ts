/**
 * A spool that cannot be written (full or read-only volume) while the trace store is down: no
 * crash, no unhandled rejection, traces held in memory (bounded) and delivered once the store is
 * back, readiness `degraded` meanwhile.
 */
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { createMemoryTraceStore } from "../../src/infra/memory-traces.ts";
import type { TraceEvent, TraceStore } from "../../src/trace/traces.ts";
import { createTraceWriter } from "../../src/trace/writer.ts";
import { type AuthEnv, startAuthEnv } from "../support/auth-env.ts";
import { type UnwritableDir, unwritableDir } from "../support/unwritable-dir.ts";

const DAY = 86_400_000;
const dirs: UnwritableDir[] = [];
let env: AuthEnv | undefined;
afterAll(async () => {
  await env?.close();
  for (const d of dirs) d.release();
});

/** A memory store that fails while `down`. */
function switchable(): TraceStore & { down: boolean } {
  const inner = createMemoryTraceStore({ retentionMs: DAY });
  const s = {
    ...inner,
    down: true,
    async insertMany(events: readonly TraceEvent[]) {
      if (s.down) throw new Error("trace store down");
      return inner.insertMany(events);
    },
  };
  return s;
}

describe("trace spool on a volume that refuses writes", () => {
  it("full volume, store down: no crash, held in memory, all delivered in order once the store is back", async (ctx) => {
    const d = unwritableDir("full", 64 * 1024);
    dirs.push(d);
    if (d.kind === "none") return ctx.skip();
    const store = switchable();
    const writer = createTraceWriter(store, pino({ level: "silent" }), {
      spoolFile: `${d.dir}/traces.spool`,
      spoolMaxBytes: 10 * 1024 * 1024,
      flushMs: 60_000,
      batchSize: 100,
    });
    // ~250 bytes a framed record: 2,000 records do not fit in 64 KiB.
    for (let i = 0; i < 2_000; i++) {
      writer.record({ type: "SEND", clientId: "full", path: "/x".repeat(40), outcome: `n${i}` });
      if (i % 100 === 99) await writer.flush();
    }
    await writer.flush();
    const s = writer.stats();
    expect(s.spoolFailing).toBe(true);
    expect(s.spoolErrors).toBeGreaterThan(0);
    expect(s.held).toBeGreaterThan(0);
    expect(s.dropped).toBe(0);

    store.down = false;
    await writer.flush();
    const stored = await store.query({ start: 0, end: Date.now() + 1, clientId: "full", limit: 10_000 });
    expect(stored.map((e) => e.outcome)).toEqual(Array.from({ length: 2_000 }, (_, i) => `n${i}`));
    expect(writer.stats()).toMatchObject({ held: 0, spooledBytes: 0, written: 2_000 });
    await writer.close();
  });

  it("read-only volume: beyond the memory bound new traces are dropped and counted, not a crash", async (ctx) => {
    const d = unwritableDir("readonly");
    dirs.push(d);
    if (d.kind === "none") return ctx.skip();
    const store = switchable();
    const writer = createTraceWriter(store, pino({ level: "silent" }), {
      spoolFile: `${d.dir}/traces.spool`,
      spoolMaxBytes: 10 * 1024 * 1024,
      maxHeldEvents: 300,
      flushMs: 60_000,
    });
    for (let i = 0; i < 500; i++) writer.record({ type: "SEND", clientId: "ro", outcome: `n${i}` });
    await writer.flush();
    expect(writer.stats()).toMatchObject({ held: 300, dropped: 200, spoolFailing: true });
    store.down = false;
    await writer.flush();
    const stored = await store.query({ start: 0, end: Date.now() + 1, clientId: "ro", limit: 10_000 });
    // The oldest were kept: the record has a hole at its end, not in its middle.
    expect(stored.map((e) => e.outcome)).toEqual(Array.from({ length: 300 }, (_, i) => `n${i}`));
    await writer.close();
  });

  it("eProxy with MongoDB down and a read-only spool keeps serving, /readyz says traces degraded", async (ctx) => {
    const d = unwritableDir("readonly");
    dirs.push(d);
    if (d.kind === "none") return ctx.skip();
    env = await startAuthEnv({
      // Nothing listens on port 9: every insert fails (after the driver's 2 s server selection).
      mongoUrl: "mongodb://127.0.0.1:9/",
      extra: { traces: { spoolFile: `${d.dir}/traces.spool`, file: `${d.dir}/traces.jsonl` } },
    });
    // A refused call records a trace.
    const refused = await env.http("GET", "/traces?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z", {
      headers: { "x-eproxy-api-key": "epk_wrong" },
    });
    expect(refused.status).toBe(401);
    await env.deps.traces.flush();
    expect(env.deps.traces.stats()).toMatchObject({ spoolFailing: true });
    const ready = await env.http("GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.json()).toMatchObject({ status: "degraded", checks: { traces: "degraded" } });
    // Still serving.
    expect((await env.http("GET", "/healthz")).status).toBe(200);
  }, 30_000);
});
