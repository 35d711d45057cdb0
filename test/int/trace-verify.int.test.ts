/**
 * Tamper evidence on MongoDB (FerretDB): each writer chains its traces; `verifyTraces` passes an
 * untouched range — chains that end at a crash and chains of several writers included — and finds a
 * deleted trace, an edited field, an edit with its hash recomputed, and two traces swapped, by id.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Collection, MongoClient } from "mongodb";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { TraceService } from "../../gen/eproxy/v1/trace_pb.ts";
import { createMongoTraceStore } from "../../src/infra/mongo-traces.ts";
import { traceHash } from "../../src/trace/chain.ts";
import type { TraceEvent, TraceStore } from "../../src/trace/traces.ts";
import { verifyTraces } from "../../src/trace/verify.ts";
import { createTraceWriter } from "../../src/trace/writer.ts";
import { type AuthEnv, startAuthEnv } from "../support/auth-env.ts";

const mongoUrl = inject("mongoUrl");
const DAY = 86_400_000;
let client: MongoClient;
const stores: TraceStore[] = [];

beforeAll(async () => {
  if (mongoUrl) client = await new MongoClient(mongoUrl).connect();
});
afterAll(async () => {
  for (const s of stores) await s.close();
  await client?.close();
});

type Doc = Omit<TraceEvent, "id" | "at"> & { _id: string; at: Date };

/** A fresh database with `writers` chains of `n` traces each, written through the real writer. */
async function recorded(n: number, writers = 1) {
  const db = `verify_${randomBytes(4).toString("hex")}`;
  const store = createMongoTraceStore(`${mongoUrl}${db}`, { retentionMs: 30 * DAY });
  stores.push(store);
  const t0 = Date.now() - 1;
  for (let w = 0; w < writers; w++) {
    const writer = createTraceWriter(store, pino({ level: "silent" }), {
      spoolFile: path.join(mkdtempSync(path.join(tmpdir(), "eproxy-verify-")), "spool"),
      spoolMaxBytes: 1024 * 1024,
      flushMs: 60_000,
      batchSize: 7,
    });
    for (let i = 0; i < n; i++) {
      writer.record({ type: "SEND", clientId: "lps-demo", service: "insi", outcome: "OK", durationMs: i });
      // Several batches, and several traces in one millisecond.
      if (i % 10 === 9) await writer.flush();
    }
    await writer.flush();
    // Not closed: a chain that ends without a stop is what a crash leaves.
  }
  const traces = client.db(db).collection<Doc>("traces");
  const bySeq = async () => (await traces.find({}).sort({ writerId: 1, seq: 1 }).toArray()) as Doc[];
  const verify = () =>
    verifyTraces((store.chains as NonNullable<TraceStore["chains"]>)(), t0, Date.now() + 1);
  return { traces, bySeq, verify };
}

const swapChainPlaces = async (traces: Collection<Doc>, a: Doc, b: Doc) => {
  await traces.updateOne({ _id: a._id }, { $set: { seq: b.seq, prevHash: b.prevHash, hash: b.hash } });
  await traces.updateOne({ _id: b._id }, { $set: { seq: a.seq, prevHash: a.prevHash, hash: a.hash } });
};

describe.skipIf(!mongoUrl)("MongoDB trace store after a restart", () => {
  it("a second process opens the existing collection and writes (FerretDB refused the indexes again)", async () => {
    const url = `${mongoUrl}restart_${randomBytes(4).toString("hex")}`;
    const first = createMongoTraceStore(url, { retentionMs: DAY });
    await first.insertMany([{ id: "a", type: "SEND", at: Date.now() }]);
    await first.close();
    const second = createMongoTraceStore(url, { retentionMs: DAY, timeoutMs: 2_000 });
    stores.push(second);
    await second.insertMany([{ id: "b", type: "SEND", at: Date.now() }]);
    expect((await second.query({ start: 0, end: Date.now() + 1, limit: 10 })).map((e) => e.id)).toEqual([
      "a",
      "b",
    ]);
  });
});

describe.skipIf(!mongoUrl)("trace chains", () => {
  it("an untouched range is clean: several writers, chains ending without a stop", async () => {
    const { verify, bySeq } = await recorded(40, 3);
    const r = await verify();
    expect(r).toMatchObject({ clean: true, traces: 120, chains: 3, unchained: 0, problems: [] });
    const docs = await bySeq();
    expect(docs.slice(0, 3).map((d) => d.seq)).toEqual([1, 2, 3]);
    expect(docs[0]?.prevHash).toBe("");
    expect(docs[1]?.prevHash).toBe(docs[0]?.hash);
  });

  it("finds a deleted trace, by the ids around it", async () => {
    const { traces, bySeq, verify } = await recorded(30);
    const docs = await bySeq();
    const gone = docs[14] as Doc;
    await traces.deleteOne({ _id: gone._id });
    const r = await verify();
    expect(r.clean).toBe(false);
    expect(r.problems).toEqual([
      expect.objectContaining({
        kind: "missing",
        seq: gone.seq,
        count: 1,
        afterId: docs[13]?._id,
        beforeId: docs[15]?._id,
      }),
    ]);
  });

  it("finds an edited field, and an edit whose hash was recomputed", async () => {
    const { traces, bySeq, verify } = await recorded(30);
    const docs = await bySeq();
    const edited = docs[5] as Doc;
    await traces.updateOne({ _id: edited._id }, { $set: { outcome: "SESSION_INVALID" } });
    const forged = docs[20] as Doc;
    const changed = { ...forged, clientId: "lps-other" };
    const { _id, at, ...rest } = changed;
    const rehashed = traceHash({ ...rest, id: _id, at: at.getTime() } as TraceEvent);
    await traces.updateOne({ _id: forged._id }, { $set: { clientId: "lps-other", hash: rehashed } });
    const r = await verify();
    expect(r.problems.map((p) => [p.kind, p.id])).toEqual([
      ["edited", edited._id],
      ["edited", forged._id],
    ]);
  });

  it("finds two traces swapped in the chain", async () => {
    const { traces, bySeq, verify } = await recorded(30);
    const docs = await bySeq();
    await swapChainPlaces(traces, docs[8] as Doc, docs[17] as Doc);
    const r = await verify();
    expect(r.problems.map((p) => [p.kind, p.id]).sort()).toEqual(
      [
        ["reordered", docs[8]?._id],
        ["reordered", docs[17]?._id],
      ].sort(),
    );
  });

  it("a deletion just outside the range still shows at its boundary", async () => {
    const { traces, bySeq } = await recorded(30);
    const docs = await bySeq();
    await traces.deleteOne({ _id: (docs[10] as Doc)._id });
    // The range holds traces 12..30 only (by time): trace 11 is gone before it.
    const store = stores.at(-1) as TraceStore;
    const from = (docs[11] as Doc).at.getTime();
    await traces.updateMany({ seq: { $lt: 12 } }, { $set: { at: new Date(from - 10_000) } });
    // (Moving times edits those traces; only the gap is asserted.)
    const r = await verifyTraces((store.chains as NonNullable<TraceStore["chains"]>)(), from, Date.now() + 1);
    expect(r.problems.filter((p) => p.kind === "missing")).toEqual([
      expect.objectContaining({ seq: 11, afterId: docs[9]?._id, beforeId: docs[11]?._id }),
    ]);
  });
});

describe.skipIf(!mongoUrl)("trace record verification for auditors (REST and gRPC)", () => {
  let env: AuthEnv;
  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-audit-"));
    env = await startAuthEnv({
      mongoUrl,
      extra: {
        traces: {
          spoolFile: path.join(dir, "spool"),
          file: path.join(dir, "traces.jsonl"),
          auditors: ["lps-demo"],
        },
      },
    });
  });
  afterAll(async () => {
    await env?.close();
  });

  it("answers the auditor only; finds a deleted trace by id", async () => {
    const start = new Date(Date.now() - 1_000).toISOString();
    // Refused calls of lps-other record traces in the writer's chain.
    for (let i = 0; i < 5; i++) {
      const r = await env.http("GET", "/traces?start=bad", {
        headers: { "x-eproxy-api-key": env.keys["lps-other"] },
      });
      expect(r.status).toBe(400);
    }
    await env.deps.traces.flush();
    const end = new Date(Date.now() + 60_000).toISOString();
    const q = `/traces/verify?start=${start}&end=${end}`;
    const denied = await env.http("GET", q, { headers: { "x-eproxy-api-key": env.keys["lps-other"] } });
    expect(denied.status).toBe(403);
    const ok = await env.http("GET", q, { headers: { "x-eproxy-api-key": env.keys["lps-demo"] } });
    expect(ok.status).toBe(200);
    expect(ok.json()).toMatchObject({ clean: true, chains: 1, problems: [] });
    expect(ok.json().traces).toBeGreaterThanOrEqual(5);

    const db = new URL(env.deps.config.stores.mongodbUrl as string).pathname.slice(1);
    const traces = client.db(db).collection<Doc>("traces");
    const docs = await traces.find({ clientId: "lps-other" }).sort({ seq: 1 }).toArray();
    const gone = docs[2] as Doc;
    await traces.deleteOne({ _id: gone._id });

    const rpc = env.grpc(TraceService);
    const v = await rpc.verifyTraces({
      startTime: timestampFromMs(Date.parse(start)),
      endTime: timestampFromMs(Date.parse(end)),
    });
    expect(v.clean).toBe(false);
    expect(v.findings).toHaveLength(1);
    expect(v.findings[0]).toMatchObject({
      kind: "missing",
      seq: BigInt(gone.seq as number),
      count: 1n,
      afterId: docs[1]?._id,
      beforeId: docs[3]?._id,
    });
    // The chain's fields come with every trace.
    const listed = await env.http("GET", `/traces?start=${start}&end=${end}`, {
      headers: { "x-eproxy-api-key": env.keys["lps-other"] },
    });
    expect(listed.json()[0]).toMatchObject({ seq: expect.any(Number), writerId: expect.any(String) });
    expect(listed.json()[0].hash).toMatch(/^[\w-]{22}$/);
  });
});
