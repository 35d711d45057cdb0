/**
 * Trace store on MongoDB: one document per event with its id as `_id` (idempotent inserts),
 * indexes for time ranges and per-client / per-professional queries, and a TTL index for
 * retention — plus the same cut-off in every query, since not every MongoDB-wire server runs TTL
 * monitors (FerretDB does not).
 */
import { type Collection, MongoBulkWriteError, MongoClient, MongoServerError } from "mongodb";
import type { ChainSource, TraceEvent, TraceQuery, TraceStore } from "../trace/traces.ts";

interface TraceDoc extends Omit<TraceEvent, "id" | "at"> {
  _id: string;
  at: Date;
}

const DUPLICATE_KEY = 11000;

/** Creates the MongoDB trace store (connects lazily; the writer spools while it cannot). */
export function createMongoTraceStore(
  url: string,
  opts: { retentionMs: number; timeoutMs?: number },
): TraceStore {
  const client = new MongoClient(url, {
    serverSelectionTimeoutMS: opts.timeoutMs ?? 2_000,
    connectTimeoutMS: opts.timeoutMs ?? 2_000,
    retryWrites: false,
  });
  let collection: Promise<Collection<TraceDoc>> | undefined;

  function traces(): Promise<Collection<TraceDoc>> {
    collection ??= (async () => {
      await client.connect();
      const c = client.db().collection<TraceDoc>("traces");
      // One index a command: FerretDB 1.24 drops the connection when a createIndexes of several
      // indexes meets some that exist (every restart of eProxy), which left the store unusable.
      const indexes: Array<{ key: Record<string, 1>; name: string }> = [
        { key: { at: 1, _id: 1 }, name: "at" },
        { key: { clientId: 1, at: 1 }, name: "client_at" },
        { key: { nationalId: 1, at: 1 }, name: "professional_at" },
        // Verification walks each writer's chain in order (`eproxy traces verify`).
        { key: { writerId: 1, seq: 1 }, name: "chain" },
      ];
      for (const index of indexes) {
        await c.createIndex(index.key, { name: index.name });
      }
      // TTL index for real MongoDB; queries apply the same cut-off for servers without TTL monitors.
      await c
        .createIndex(
          { at: 1 },
          { name: "retention", expireAfterSeconds: Math.round(opts.retentionMs / 1000) },
        )
        .catch(() => undefined);
      return c;
    })().catch((err: unknown) => {
      collection = undefined;
      throw err;
    });
    return collection;
  }

  return {
    async insertMany(events) {
      if (!events.length) return;
      const c = await traces();
      const docs = events.map(toDoc);
      try {
        // Absent fields are undefined in an event (one shape for all): left out, not stored as null.
        await c.insertMany(docs, { ordered: false, ignoreUndefined: true });
      } catch (err) {
        // Replays of already-stored events are expected; anything else is a real failure.
        const writeErrors =
          err instanceof MongoBulkWriteError
            ? Array.isArray(err.writeErrors)
              ? err.writeErrors
              : [err.writeErrors]
            : [];
        // A bulk error without write errors is a failed connection, not a replay: it must spool.
        const dupOnly =
          (writeErrors.length > 0 && writeErrors.every((w) => w.code === DUPLICATE_KEY)) ||
          (err instanceof MongoServerError &&
            !(err instanceof MongoBulkWriteError) &&
            err.code === DUPLICATE_KEY);
        if (!dupOnly) throw err;
      }
    },
    async query(q: TraceQuery) {
      const c = await traces();
      const floor = Math.max(q.start, Date.now() - opts.retentionMs);
      const filter: Record<string, unknown> = { at: { $gte: new Date(floor), $lt: new Date(q.end) } };
      if (q.clientId) filter.clientId = q.clientId;
      if (q.type) filter.type = q.type;
      if (q.nationalId) filter.nationalId = q.nationalId;
      if (q.after) {
        const at = new Date(q.after.at);
        filter.$or = [{ at: { $gt: at } }, { at, _id: { $gt: q.after.id } }];
      }
      const docs = await c.find(filter).sort({ at: 1, _id: 1 }).limit(q.limit).toArray();
      return docs.map(fromDoc);
    },
    async ping() {
      await (await traces()).db.command({ ping: 1 });
    },
    chains: () => mongoChains(traces, opts.retentionMs),
    async close() {
      await client.close().catch(() => undefined);
    },
  };
}

/** The document of an event: `_id` and a Date for `at`, then its fields in the event's order. */
function toDoc(e: TraceEvent): TraceDoc {
  // Every field named (a field added to TraceEvent and not here is a type error).
  const doc: { [K in keyof Required<TraceDoc>]: TraceDoc[K] | undefined } = {
    _id: e.id,
    at: new Date(e.at),
    requestId: e.requestId,
    callerIp: e.callerIp,
    type: e.type,
    clientId: e.clientId,
    nationalId: e.nationalId,
    sessionState: e.sessionState,
    service: e.service,
    method: e.method,
    path: e.path,
    soapAction: e.soapAction,
    upstreamStatus: e.upstreamStatus,
    durationMs: e.durationMs,
    bytesIn: e.bytesIn,
    bytesOut: e.bytesOut,
    correlationId: e.correlationId,
    outcome: e.outcome,
    sessionHash: e.sessionHash,
    certificateDn: e.certificateDn,
    writerId: e.writerId,
    seq: e.seq,
    prevHash: e.prevHash,
    hash: e.hash,
  };
  return doc as TraceDoc;
}

const fromDoc = ({ _id, at, ...rest }: TraceDoc): TraceEvent =>
  ({ id: _id, at: at.getTime(), ...rest }) as TraceEvent;

/** The writers' chains in the collection, read in seq order through the `chain` index. */
function mongoChains(traces: () => Promise<Collection<TraceDoc>>, retentionMs: number): ChainSource {
  const range = (start: number, end: number) => ({
    $gte: new Date(Math.max(start, Date.now() - retentionMs)),
    $lt: new Date(end),
  });
  return {
    async chainsIn(start, end) {
      const c = await traces();
      const at = range(start, end);
      // distinct + two index reads a writer: $group's $min/$max are not on every MongoDB-wire server.
      const writers = (await c.distinct("writerId", { at })).filter(
        (w): w is string => typeof w === "string",
      );
      return Promise.all(
        writers.map(async (writerId) => {
          const edge = (dir: 1 | -1) =>
            c.findOne({ writerId, at }, { sort: { seq: dir }, projection: { seq: 1 } });
          const [first, last] = await Promise.all([edge(1), edge(-1)]);
          return { writerId, first: first?.seq ?? 0, last: last?.seq ?? 0 };
        }),
      );
    },
    async unchainedIn(start, end) {
      return (await traces()).countDocuments({ at: range(start, end), writerId: { $exists: false } });
    },
    async *chain(writerId, first, last) {
      const c = await traces();
      const cursor = c.find({ writerId, seq: { $gte: first, $lte: last } }).sort({ seq: 1, _id: 1 });
      try {
        for await (const d of cursor) yield fromDoc(d);
      } finally {
        await cursor.close();
      }
    },
    async neighbour(writerId, seq, dir) {
      const c = await traces();
      const d = await c.findOne(
        { writerId, seq: dir < 0 ? { $lt: seq } : { $gt: seq } },
        { sort: { seq: dir, _id: dir } },
      );
      return d ? fromDoc(d) : undefined;
    },
  };
}
