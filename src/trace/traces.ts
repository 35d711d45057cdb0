/**
 * Access traces: one event per access (who, which client, which service, outcome), written off the
 * request path. Domain code calls `record()`; the writer batches, stores, and spools when the store
 * is down. No token, no SOAP body, no patient data ever goes in a trace.
 */

import { hash, randomBytes } from "node:crypto";
import { memoize } from "../memo.ts";

/** Event types. */
export type TraceType =
  | "CONNECT_SUCCESS"
  | "CONNECT_REPLAY"
  | "CONNECT_FAILURE"
  | "REFRESH"
  | "REFRESH_FAILURE"
  | "EXCHANGE"
  | "SEND"
  | "DISCONNECT"
  | "REJECTED"
  | "FAILED"
  | "ALERT";

/** One stored trace. `at` is milliseconds since the epoch. */
export interface TraceEvent {
  id: string;
  type: TraceType;
  at: number;
  clientId?: string;
  nationalId?: string;
  callerIp?: string;
  sessionHash?: string;
  sessionState?: string;
  certificateDn?: string;
  correlationId?: string;
  requestId?: string;
  service?: string;
  method?: string;
  path?: string;
  soapAction?: string;
  upstreamStatus?: number;
  durationMs?: number;
  bytesIn?: number;
  bytesOut?: number;
  outcome?: string;
  /** The writer (one per process start) whose chain holds this trace (`chain.ts`). */
  writerId?: string;
  /** Position in the writer's chain, from 1. */
  seq?: number;
  /** Hash of the previous trace of the chain; empty for the first. */
  prevHash?: string;
  /** Hash of this trace's canonical encoding (every field but this one). */
  hash?: string;
}

/** What callers give; id and time are filled in, the chain fields by the writer. */
export type TraceInput = Omit<TraceEvent, "id" | "at" | "writerId" | "seq" | "prevHash" | "hash"> & {
  sessionId?: string;
};

/** Records traces (never blocks, never throws). */
export interface Traces {
  record(e: TraceInput): void;
}

/** Filters of a trace query. */
export interface TraceQuery {
  start: number;
  end: number;
  clientId?: string;
  type?: string;
  nationalId?: string;
  /** Events strictly after this (at, id) position. */
  after?: { at: number; id: string };
  limit: number;
}

/** Where traces are kept and read. */
export interface TraceStore {
  /** Inserts events; an id already stored is skipped (idempotent replay). */
  insertMany(events: readonly TraceEvent[]): Promise<void>;
  /** Events in [start, end) matching the filters, oldest first, at most `limit`. */
  query(q: TraceQuery): Promise<TraceEvent[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
  /**
   * Given the writer's flush by the writer over this store: a store shared by several writers (the
   * workers' primary) flushes them all before it answers a query.
   */
  bindWriter?(flush: () => Promise<void>): void;
  /** The writers' chains, for verification (stores that keep every trace: MongoDB). */
  chains?(): ChainSource;
}

/** Where the chains are read (the trace store's adapter). */
export interface ChainSource {
  /** The writers with traces in [start, end), with the lowest and highest seq there. */
  chainsIn(start: number, end: number): Promise<Array<{ writerId: string; first: number; last: number }>>;
  /** Traces in [start, end) that carry no chain (written before chaining existed). */
  unchainedIn(start: number, end: number): Promise<number>;
  /** The writer's traces with first <= seq <= last, in seq order (whatever their time). */
  chain(writerId: string, first: number, last: number): AsyncIterable<TraceEvent>;
  /** The writer's nearest trace before `seq` (`dir` -1) or after it (+1), if any. */
  neighbour(writerId: string, seq: number, dir: -1 | 1): Promise<TraceEvent | undefined>;
}

/** Hash of a session id for traces: lets traces of one session be grouped, reveals nothing else. */
export const sessionHashOf: (sessionId: string) => string = memoize((sessionId) =>
  hash("sha256", `trace\n${sessionId}`, "base64url").slice(0, 22),
);

let sequence = 0;
const instance = randomBytes(4).toString("hex");

/**
 * A unique id that sorts in recording order: time, then a per-process sequence, then an instance
 * tag (so two replicas never collide). Queries order by (time, id), so events recorded in the same
 * millisecond keep their order.
 */
export function traceId(now: number): string {
  sequence = (sequence + 1) % 36 ** 6;
  return `${now.toString(36).padStart(9, "0")}${sequence.toString(36).padStart(6, "0")}${instance}`;
}

/** The request's own fields of a trace, taken from its context when the input does not name them. */
export interface TraceContext {
  requestId?: string | undefined;
  callerIp?: string | undefined;
}

/**
 * Builds a complete event from an input. Every event has the same shape (every field, in one
 * order, undefined when absent: JSON, the spool and the stores leave those out), so that building,
 * chaining and serialising it stay on V8's fast paths instead of copying spreads key by key.
 */
export function toEvent(input: TraceInput, now = Date.now(), ctx?: TraceContext): TraceEvent {
  const sessionId = input.sessionId;
  // Every field named (a field added to TraceEvent and not here is a type error).
  const e: { [K in keyof Required<TraceEvent>]: TraceEvent[K] | undefined } = {
    id: traceId(now),
    at: now,
    // An input's own field wins, as the context's fields were spread before it.
    requestId: "requestId" in input ? input.requestId : ctx?.requestId || undefined,
    callerIp: "callerIp" in input ? input.callerIp : ctx?.callerIp || undefined,
    type: input.type,
    clientId: input.clientId,
    nationalId: input.nationalId,
    sessionState: input.sessionState,
    service: input.service,
    method: input.method,
    path: input.path,
    soapAction: input.soapAction,
    upstreamStatus: input.upstreamStatus,
    durationMs: input.durationMs,
    bytesIn: input.bytesIn,
    bytesOut: input.bytesOut,
    correlationId: input.correlationId,
    outcome: input.outcome,
    sessionHash: sessionId ? sessionHashOf(sessionId) : input.sessionHash,
    certificateDn: input.certificateDn,
    writerId: undefined,
    seq: undefined,
    prevHash: undefined,
    hash: undefined,
  };
  return e as TraceEvent;
}

/** Encodes and decodes page tokens (the last event's position). */
export const pageToken = {
  encode(e: TraceEvent): string {
    return Buffer.from(`${e.at}|${e.id}`).toString("base64url");
  },
  decode(token: string): { at: number; id: string } | undefined {
    const [at, id] = Buffer.from(token, "base64url").toString().split("|");
    return at && id && /^\d+$/.test(at) ? { at: Number(at), id } : undefined;
  },
};
