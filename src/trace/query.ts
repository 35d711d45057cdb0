/**
 * Reading traces: a client reads its own traces only, in a bounded time range, page by page.
 */
import { EproxyError } from "../errors.ts";
import { type ChainSource, pageToken, type TraceEvent, type TraceStore } from "./traces.ts";
import { chainsFromQuery, type VerifyReport, verifyTraces } from "./verify.ts";

/**
 * The store as queries see it: what this process's writer still queues is written first, so a
 * query sees every trace recorded before it (a client that reads its traces right after a call).
 */
export function readAfterWrite(store: TraceStore, writer: { flush(): Promise<void> }): TraceStore {
  return {
    insertMany: (events) => store.insertMany(events),
    async query(q) {
      await writer.flush();
      return store.query(q);
    },
    ping: () => store.ping(),
    close: () => store.close(),
    ...(store.chains ? { chains: () => (store.chains as () => ChainSource)() } : {}),
  };
}

/** A validated trace query from a transport. */
export interface ListTracesInput {
  clientId: string;
  start?: number;
  end?: number;
  type?: string;
  nationalId?: string;
  pageSize?: number;
  pageToken?: string;
}

const MAX_RANGE_MS = 366 * 86_400_000;

/** Lists the caller's traces. */
export async function listTraces(
  store: TraceStore,
  q: ListTracesInput,
): Promise<{ traces: TraceEvent[]; nextPageToken: string }> {
  if (q.start === undefined || q.end === undefined || Number.isNaN(q.start) || Number.isNaN(q.end)) {
    throw new EproxyError("INVALID_ARGUMENT", "start and end are required ISO 8601 instants");
  }
  if (q.end <= q.start) throw new EproxyError("INVALID_ARGUMENT", "end must be after start");
  if (q.end - q.start > MAX_RANGE_MS)
    throw new EproxyError("INVALID_ARGUMENT", "the range may not exceed 366 days");
  const limit = Math.min(Math.max(q.pageSize || 100, 1), 1000);
  let after: { at: number; id: string } | undefined;
  if (q.pageToken) {
    after = pageToken.decode(q.pageToken);
    if (!after) throw new EproxyError("INVALID_ARGUMENT", "invalid pageToken");
  }
  let traces: TraceEvent[];
  try {
    traces = await store.query({
      start: q.start,
      end: q.end,
      clientId: q.clientId,
      ...(q.type ? { type: q.type } : {}),
      ...(q.nationalId ? { nationalId: q.nationalId } : {}),
      ...(after ? { after } : {}),
      limit,
    });
  } catch (err) {
    throw new EproxyError("UNAVAILABLE", "trace store unavailable", { cause: err });
  }
  const last = traces.at(-1);
  return { traces, nextPageToken: traces.length === limit && last ? pageToken.encode(last) : "" };
}

/** A validated request to verify the trace record. */
export interface VerifyRecordInput {
  clientId: string;
  /** The clients allowed to verify (`traces.auditors`). */
  auditors: readonly string[];
  start?: number;
  end?: number;
}

/**
 * Verifies the trace record over a range, for an auditor. The chains hold every client's traces, so
 * only the clients named in `traces.auditors` may ask; the answer carries ids and positions, never a
 * trace's content.
 */
export async function verifyRecord(store: TraceStore, q: VerifyRecordInput): Promise<VerifyReport> {
  if (!q.auditors.includes(q.clientId)) {
    throw new EproxyError(
      "PERMISSION_DENIED",
      "only the clients listed in traces.auditors may verify the trace record",
    );
  }
  if (q.start === undefined || q.end === undefined || Number.isNaN(q.start) || Number.isNaN(q.end)) {
    throw new EproxyError("INVALID_ARGUMENT", "start and end are required ISO 8601 instants");
  }
  if (q.end <= q.start) throw new EproxyError("INVALID_ARGUMENT", "end must be after start");
  if (q.end - q.start > MAX_RANGE_MS)
    throw new EproxyError("INVALID_ARGUMENT", "the range may not exceed 366 days");
  try {
    return await verifyTraces(store.chains ? store.chains() : chainsFromQuery(store), q.start, q.end);
  } catch (err) {
    throw new EproxyError("UNAVAILABLE", "trace store unavailable", { cause: err });
  }
}
