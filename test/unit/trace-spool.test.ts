/**
 * The spool's framed records: a record torn by a crash mid-write or damaged on disk is skipped and
 * counted, delivery goes on with the records after it, and a spool of the previous format (bare
 * JSON lines) is still replayed.
 */
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createMemoryTraceStore } from "../../src/infra/memory-traces.ts";
import { frameRecord, readSpool } from "../../src/trace/spool.ts";
import type { TraceEvent } from "../../src/trace/traces.ts";
import { createTraceWriter } from "../../src/trace/writer.ts";

const DAY = 86_400_000;
const ev = (i: number): TraceEvent => ({
  id: `id-${String(i).padStart(4, "0")}`,
  type: "SEND",
  at: Date.now() - 60_000 + i,
  clientId: "spool",
  outcome: `n${i}`,
});
const all = { start: 0, end: Date.now() + DAY, clientId: "spool", limit: 10_000 };
const spoolIn = () => path.join(mkdtempSync(path.join(tmpdir(), "eproxy-spool-unit-")), "traces.spool");

function writerOver(spoolFile: string) {
  const store = createMemoryTraceStore({ retentionMs: DAY });
  const writer = createTraceWriter(store, pino({ level: "silent" }), {
    spoolFile,
    spoolMaxBytes: 1024 * 1024,
    flushMs: 60_000,
  });
  return { store, writer };
}

describe("trace spool", () => {
  it("skips a torn last record and a corrupt one in the middle, counts them, delivers the rest", async () => {
    const spoolFile = spoolIn();
    const good = [0, 1, 2, 3].map((i) => frameRecord(ev(i)));
    // Record 1 damaged on disk (one byte of its JSON changed), record 4 torn by a crash mid-write.
    const damaged = (good[1] as string).replace('"n1"', '"n9"');
    const torn = frameRecord(ev(4)).slice(0, 30);
    writeFileSync(spoolFile, `${good[0]}${damaged}${good[2]}${good[3]}${torn}`);
    const { store, writer } = writerOver(spoolFile);
    writer.record({ type: "SEND", clientId: "spool", outcome: "after" });
    await writer.flush();
    const stored = await store.query(all);
    expect(stored.map((e) => e.outcome)).toEqual(["n0", "n2", "n3", "after"]);
    expect(writer.stats()).toMatchObject({ corrupt: 2, spooledBytes: 0, written: 4 });
    await writer.close();
  });

  it("appends after a torn tail on a new line: the next records are not lost with it", async () => {
    const spoolFile = spoolIn();
    writeFileSync(spoolFile, `${frameRecord(ev(0))}${frameRecord(ev(1)).slice(0, 20)}`);
    // Stores that refuse everything: the writer spools behind the torn tail.
    const failing = createMemoryTraceStore({ retentionMs: DAY });
    let up = false;
    const store = {
      ...failing,
      insertMany: async (b: readonly TraceEvent[]) => {
        if (!up) throw new Error("store down");
        return failing.insertMany(b);
      },
    };
    const writer = createTraceWriter(store, pino({ level: "silent" }), {
      spoolFile,
      spoolMaxBytes: 1024 * 1024,
      flushMs: 60_000,
    });
    writer.record({ type: "SEND", clientId: "spool", outcome: "later" });
    await writer.flush();
    const items = [...readSpool(spoolFile)];
    expect(items.map((i) => ("event" in i ? i.event.outcome : "corrupt"))).toEqual([
      "n0",
      "corrupt",
      "later",
    ]);
    up = true;
    await writer.flush();
    expect((await failing.query(all)).map((e) => e.outcome)).toEqual(["n0", "later"]);
    expect(writer.stats().corrupt).toBe(1);
    await writer.close();
  });

  it("replays a spool of the previous format (JSON lines), torn last line included", async () => {
    const spoolFile = spoolIn();
    writeFileSync(spoolFile, `${JSON.stringify(ev(0))}\n${JSON.stringify(ev(1))}\n`);
    appendFileSync(spoolFile, JSON.stringify(ev(2)).slice(0, 25));
    const { store, writer } = writerOver(spoolFile);
    await writer.flush();
    expect((await store.query(all)).map((e) => e.outcome)).toEqual(["n0", "n1"]);
    expect(writer.stats().corrupt).toBe(1);
    expect(readFileSync(spoolFile, "utf8")).toBe("");
    await writer.close();
  });

  it("reads records across chunk boundaries", () => {
    const spoolFile = spoolIn();
    writeFileSync(spoolFile, Array.from({ length: 50 }, (_, i) => frameRecord(ev(i))).join(""));
    const items = [...readSpool(spoolFile, 64)];
    expect(items.map((i) => ("event" in i ? i.event.id : "corrupt"))).toEqual(
      Array.from({ length: 50 }, (_, i) => ev(i).id),
    );
  });
});
