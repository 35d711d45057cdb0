import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { MongoClient } from "mongodb";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { TraceService } from "../../gen/eproxy/v1/trace_pb.ts";
import { createMemoryTraceStore } from "../../src/infra/memory-traces.ts";
import { createMongoTraceStore } from "../../src/infra/mongo-traces.ts";
import { insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type TraceEvent, type TraceStore, toEvent } from "../../src/trace/traces.ts";
import { createTraceWriter } from "../../src/trace/writer.ts";
import { type AuthEnv, DOCTOR, startAuthEnv } from "../support/auth-env.ts";
import { startFerret, type TestServerProcess } from "../support/servers.ts";

const mongoUrl = inject("mongoUrl");
const DAY = 86_400_000;

function ev(over: Partial<TraceEvent>): TraceEvent {
  return { id: randomUUID(), type: "SEND", at: Date.now(), clientId: "lps-demo", ...over };
}

function traceContract(name: string, make: () => TraceStore) {
  describe(`TraceStore contract: ${name}`, () => {
    let store: TraceStore;
    beforeAll(() => {
      store = make();
    });
    afterAll(async () => {
      await store.close();
    });

    it("inserts idempotently and answers time ranges with filters, oldest first", async () => {
      const t0 = Date.now() - 10_000;
      const a = ev({ at: t0, type: "CONNECT_SUCCESS", nationalId: "899700218896" });
      const b = ev({ at: t0 + 1_000, type: "SEND", nationalId: "899700218896" });
      const c = ev({ at: t0 + 2_000, type: "SEND", clientId: "lps-other" });
      await store.insertMany([a, b, c]);
      await store.insertMany([a, b]);
      const all = await store.query({ start: t0, end: t0 + 3_000, clientId: "lps-demo", limit: 100 });
      expect(all.map((e) => e.id)).toEqual([a.id, b.id]);
      expect(all[0]).toEqual(a);
      expect(
        (
          await store.query({ start: t0, end: t0 + 3_000, clientId: "lps-demo", type: "SEND", limit: 100 })
        ).map((e) => e.id),
      ).toEqual([b.id]);
      expect(
        (await store.query({ start: t0 + 500, end: t0 + 3_000, clientId: "lps-other", limit: 100 })).map(
          (e) => e.id,
        ),
      ).toEqual([c.id]);
    });

    it("leaves out the fields an event does not have (toEvent gives them all, undefined)", async () => {
      const t0 = Date.now() - 5_000;
      const e = toEvent({ type: "SEND", clientId: "lps-shape", outcome: "OK" }, t0);
      await store.insertMany([e]);
      const got = await store.query({ start: t0, end: t0 + 1, clientId: "lps-shape", limit: 10 });
      expect(got.map((g) => Object.keys(g).sort())).toEqual([["at", "clientId", "id", "outcome", "type"]]);
    });

    it("pages by (time, id) without gaps or repeats", async () => {
      const t0 = Date.now() - 20_000;
      const batch = Array.from({ length: 7 }, (_, i) =>
        ev({ at: t0 + Math.floor(i / 2), clientId: "pager" }),
      );
      await store.insertMany(batch);
      const seen: string[] = [];
      let after: { at: number; id: string } | undefined;
      for (;;) {
        const page = await store.query({
          start: t0,
          end: t0 + 100,
          clientId: "pager",
          limit: 3,
          ...(after ? { after } : {}),
        });
        seen.push(...page.map((e) => e.id));
        if (page.length < 3) break;
        const last = page.at(-1) as TraceEvent;
        after = { at: last.at, id: last.id };
      }
      expect(new Set(seen).size).toBe(7);
      expect(seen.sort()).toEqual(batch.map((e) => e.id).sort());
    });

    it("does not return events older than the retention, even without a TTL monitor", async () => {
      const old = ev({ at: Date.now() - 40 * DAY, clientId: "retention" });
      await store.insertMany([old]);
      expect(
        await store.query({
          start: Date.now() - 50 * DAY,
          end: Date.now(),
          clientId: "retention",
          limit: 10,
        }),
      ).toEqual([]);
    });
  });
}

traceContract("memory", () => createMemoryTraceStore({ retentionMs: 30 * DAY }));

describe.skipIf(!mongoUrl)("MongoDB traces", () => {
  traceContract("MongoDB (FerretDB)", () =>
    createMongoTraceStore(`${mongoUrl}contract_${Date.now()}`, { retentionMs: 30 * DAY }),
  );

  let env: AuthEnv;
  beforeAll(async () => {
    env = await startAuthEnv({ mongoUrl });
  });
  afterAll(async () => {
    await env?.close();
  });

  async function login(): Promise<string> {
    const auth = env.auth();
    const started = await auth.startCiba({ nationalId: DOCTOR });
    let last: any;
    for await (const m of auth.watchCiba({ authReqId: started.authReqId })) last = m;
    expect(last.status).toBe(CibaStatus.APPROVED);
    return last.session.sessionToken;
  }

  it("traces every access — connect, exchange, send, rejection, disconnect — queryable by REST and RPC, with no secret stored", async () => {
    const since = new Date(Date.now() - 1_000).toISOString();
    const token = await login();
    const soap = insiSearchRequest("UNIQUE");
    const sent = await env.http("POST", "/send/insi/rechercherInsAvecTraitsIdentite?x=1", {
      headers: {
        "x-eproxy-api-key": env.keys["lps-demo"],
        authorization: `Bearer ${token}`,
        "content-type": "application/soap+xml",
      },
      body: soap,
    });
    expect(sent.status).toBe(200);
    const rejected = await env.http("POST", "/send/insi", {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"], "content-type": "application/soap+xml" },
      body: soap,
    });
    expect(rejected.status).toBe(401);
    await env.auth().logout({ sessionToken: token });
    await env.deps.traces.flush();

    const until = new Date(Date.now() + 1_000).toISOString();
    const res = await env.http("GET", `/traces?start=${since}&end=${until}`, {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
    });
    expect(res.status).toBe(200);
    const traces = res.json() as Array<Record<string, any>>;
    const types = traces.map((t) => t.type);
    for (const t of ["CONNECT_SUCCESS", "EXCHANGE", "SEND", "REJECTED", "DISCONNECT"])
      expect(types).toContain(t);
    const send = traces.find((t) => t.type === "SEND") as Record<string, any>;
    expect(send).toMatchObject({
      clientId: "lps-demo",
      nationalId: DOCTOR,
      service: "insi",
      method: "POST",
      path: "/rechercherInsAvecTraitsIdentite",
      soapAction: "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite",
      upstreamStatus: 200,
      bytesIn: Buffer.byteLength(soap),
      outcome: "OK",
      callerIp: "127.0.0.1",
    });
    expect(send.bytesOut).toBeGreaterThan(0);
    expect(send.certificateDn).toContain("CN=lps-demo");
    expect(send.correlationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(send.sessionHash).toMatch(/^[\w-]{22}$/);
    expect(traces.find((t) => t.type === "REJECTED")?.outcome).toBe("SESSION_INVALID");
    // Another client sees none of it.
    const other = await env.http("GET", `/traces?start=${since}&end=${until}`, {
      headers: { "x-eproxy-api-key": env.keys["lps-other"] },
    });
    expect(other.json().filter((t: any) => t.clientId === "lps-demo")).toEqual([]);

    const rpc = env.grpc(TraceService);
    const page = await rpc.listTraces({
      startTime: timestampFromMs(Date.parse(since)),
      endTime: timestampFromMs(Date.parse(until)),
      type: "SEND",
      pageSize: 10,
    });
    expect(page.traces.map((t) => t.type)).toEqual(["SEND"]);
    expect(page.traces[0]?.bytesIn).toBe(BigInt(Buffer.byteLength(soap)));

    // What MongoDB holds: no token, no SOAP body.
    const mongo = new MongoClient(env.deps.config.stores.mongodbUrl as string);
    try {
      const docs = await mongo.db().collection("traces").find({}).toArray();
      const dump = JSON.stringify(docs);
      expect(docs.length).toBeGreaterThanOrEqual(5);
      expect(dump).not.toContain(token);
      expect(dump).not.toContain("SANDRINE");
      expect(dump).not.toContain(env.keys["lps-demo"]);
      expect(dump).not.toMatch(/eyJ[\w-]+\./);
    } finally {
      await mongo.close();
    }
  });

  it("refuses bad ranges with a problem document", async () => {
    const r = await env.http("GET", "/traces?start=yesterday", {
      headers: { "x-eproxy-api-key": env.keys["lps-demo"] },
    });
    expect(r.status).toBe(400);
    expect(r.json().detail).toMatch(/ISO 8601/);
  });
});

describe.skipIf(!mongoUrl)("nothing lost while MongoDB is down", () => {
  let own: TestServerProcess;
  beforeAll(async () => {
    own = await startFerret(inject("ferretBin"), mkdtempSync(path.join(tmpdir(), "eproxy-ferret-")));
  });
  afterAll(async () => {
    await own?.stop();
  });

  it("spools while MongoDB is stopped, replays in order after restart, counts match exactly", async () => {
    const url = `${own.url}spool_${Date.now()}`;
    const store = createMongoTraceStore(url, { retentionMs: 30 * DAY, timeoutMs: 500 });
    const spoolFile = path.join(mkdtempSync(path.join(tmpdir(), "eproxy-spool-")), "spool.jsonl");
    const writer = createTraceWriter(store, pino({ level: "silent" }), {
      spoolFile,
      spoolMaxBytes: 10 * 1024 * 1024,
      flushMs: 50,
    });
    const t0 = Date.now();
    for (let i = 0; i < 10; i++) writer.record({ type: "SEND", clientId: "spool", outcome: `before-${i}` });
    await writer.flush();
    expect(writer.stats().written).toBe(10);

    await own.stop();
    for (let i = 0; i < 30; i++) writer.record({ type: "SEND", clientId: "spool", outcome: `down-${i}` });
    await writer.flush();
    expect(writer.stats().spooledBytes).toBeGreaterThan(0);
    // More events while the spool is not empty keep their order behind it.
    for (let i = 0; i < 5; i++) writer.record({ type: "SEND", clientId: "spool", outcome: `late-${i}` });
    await writer.flush();

    await own.restart();
    for (let i = 0; i < 100 && writer.stats().spooledBytes > 0; i++) {
      await writer.flush();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(writer.stats().spooledBytes).toBe(0);
    const events = await store.query({ start: t0 - 1, end: Date.now() + 1, clientId: "spool", limit: 1000 });
    expect(events).toHaveLength(45);
    expect(new Set(events.map((e) => e.id)).size).toBe(45);
    const outcomes = events.map((e) => e.outcome);
    expect(outcomes.filter((o) => o?.startsWith("down-"))).toEqual(
      Array.from({ length: 30 }, (_, i) => `down-${i}`),
    );
    // A crash after inserting but before truncating the spool replays the same ids: no duplicates.
    await store.insertMany(events.slice(0, 10));
    expect(
      await store.query({ start: t0 - 1, end: Date.now() + 1, clientId: "spool", limit: 1000 }),
    ).toHaveLength(45);
    await writer.close();
  }, 60_000);
});
