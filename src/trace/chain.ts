/**
 * Tamper evidence of the trace record: each writer (one per process start: a worker, a replica, a
 * restart) chains its traces. A trace carries its writer's id, its sequence number in that writer's
 * chain (1, 2, 3, ...), the hash of its predecessor (`prevHash`, empty for the first) and its own
 * hash, computed over a canonical encoding of every field but `hash` — `prevHash` included, so a
 * trace's hash covers the whole chain before it. Deleting, editing or reordering a stored trace
 * breaks the sequence, the trace's own hash or its successor's link (`verify.ts` reads them).
 *
 * Sealing runs in the writer's batch, off the request path: one JSON array and one SHA-256 a trace.
 */
import { hash, randomBytes } from "node:crypto";
import type { TraceEvent } from "./traces.ts";

/**
 * The fields covered by a trace's hash, in their canonical order. New fields are appended, never
 * inserted: trailing absent fields are left out of the encoding, so traces written before a field
 * existed keep their hash.
 */
export const CHAINED_FIELDS = [
  "id",
  "type",
  "at",
  "clientId",
  "nationalId",
  "callerIp",
  "sessionHash",
  "sessionState",
  "certificateDn",
  "correlationId",
  "requestId",
  "service",
  "method",
  "path",
  "soapAction",
  "upstreamStatus",
  "durationMs",
  "bytesIn",
  "bytesOut",
  "outcome",
  "writerId",
  "seq",
  "prevHash",
] as const satisfies ReadonlyArray<Exclude<keyof TraceEvent, "hash">>;

// Compile-time: a field added to TraceEvent and not to CHAINED_FIELDS is a type error here.
type Unchained = Exclude<keyof TraceEvent, (typeof CHAINED_FIELDS)[number] | "hash">;
const everyFieldChained: [Unchained] extends [never] ? true : Unchained = true;
void everyFieldChained;

/**
 * The canonical encoding: `t1` then the JSON array of the chained fields in CHAINED_FIELDS' order,
 * null for an absent one, trailing nulls left out. Spelled out field by field (a loop over the names
 * costs twice as much, and this runs for every trace); a unit test holds it equal to the list.
 */
export function canonicalTrace(e: Readonly<TraceEvent>): string {
  // A stored null (MongoDB keeps undefined as null) and an absent field are the same.
  const values: unknown[] = [
    e.id,
    e.type,
    e.at,
    e.clientId ?? null,
    e.nationalId ?? null,
    e.callerIp ?? null,
    e.sessionHash ?? null,
    e.sessionState ?? null,
    e.certificateDn ?? null,
    e.correlationId ?? null,
    e.requestId ?? null,
    e.service ?? null,
    e.method ?? null,
    e.path ?? null,
    e.soapAction ?? null,
    e.upstreamStatus ?? null,
    e.durationMs ?? null,
    e.bytesIn ?? null,
    e.bytesOut ?? null,
    e.outcome ?? null,
    e.writerId ?? null,
    e.seq ?? null,
    e.prevHash ?? null,
  ];
  let end = values.length;
  while (end > 0 && values[end - 1] === null) end--;
  values.length = end;
  return `t1${JSON.stringify(values)}`;
}

/** A trace's hash: SHA-256 of its canonical encoding, 128 bits in base64url (22 characters). */
export function traceHash(e: Readonly<TraceEvent>): string {
  return hash("sha256", canonicalTrace(e), "base64url").slice(0, 22);
}

/** One writer's chain. */
export interface TraceChain {
  /** This writer's id. */
  readonly writerId: string;
  /** Sets writerId, seq, prevHash and hash on each event, in order. */
  seal(events: TraceEvent[]): void;
  /** The last sealed trace's position (for the log line that anchors the chain's end). */
  head(): { writerId: string; seq: number; hash: string };
}

/** A new chain, with a fresh writer id (one per process start: chains never continue across one). */
export function createTraceChain(writerId = randomBytes(9).toString("base64url")): TraceChain {
  let seq = 0;
  let last = "";
  return {
    writerId,
    seal(events) {
      for (const e of events) {
        e.writerId = writerId;
        e.seq = ++seq;
        e.prevHash = last;
        last = traceHash(e);
        e.hash = last;
      }
    },
    head: () => ({ writerId, seq, hash: last }),
  };
}
