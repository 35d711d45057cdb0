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
}

/** What callers give; id and time are filled in. */
export type TraceInput = Omit<TraceEvent, "id" | "at"> & { sessionId?: string };

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

/** Builds a complete event from an input. */
export function toEvent(input: TraceInput, now = Date.now()): TraceEvent {
  const { sessionId, ...rest } = input;
  return {
    id: traceId(now),
    at: now,
    ...rest,
    ...(sessionId ? { sessionHash: sessionHashOf(sessionId) } : {}),
  };
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
