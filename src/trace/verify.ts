/**
 * Verifies the trace record: walks each writer's chain (`chain.ts`) over a time range and reports
 * every trace that is missing (a gap in the sequence), edited (its hash does not match its fields, or
 * its successor's link does not match its hash) or reordered (an edited trace out of order with its
 * neighbours by time or id: moved in the chain), by id. A chain that simply ends (a crash, a stop)
 * is not a finding: only what is missing between two stored traces is. Traces written before
 * chaining existed are counted as unchained.
 *
 * Each chain is streamed in sequence order with a window of three traces: memory does not grow
 * with the range.
 */
import { traceHash } from "./chain.ts";
import type { ChainSource, TraceEvent, TraceStore } from "./traces.ts";

export type { ChainSource };

/** One finding. */
export interface TraceProblem {
  kind: "missing" | "edited" | "reordered";
  writerId: string;
  /** The trace found (edited, reordered); for missing, the first missing seq. */
  seq: number;
  /** Id of the trace (edited, reordered); for missing, absent. */
  id?: string;
  /** For missing: how many traces, and the ids of the stored traces on each side. */
  count?: number;
  afterId?: string;
  beforeId?: string;
  detail: string;
}

/** The verification of a range. */
export interface VerifyReport {
  start: number;
  end: number;
  /** Chained traces checked (the range's, plus its neighbours at each end). */
  traces: number;
  chains: number;
  unchained: number;
  problems: TraceProblem[];
  /** No problem found. */
  clean: boolean;
}

/** Verifies the chains of [start, end); stops collecting after `maxProblems` findings. */
export async function verifyTraces(
  source: ChainSource,
  start: number,
  end: number,
  opts: { maxProblems?: number } = {},
): Promise<VerifyReport> {
  const maxProblems = opts.maxProblems ?? 1_000;
  const chains = await source.chainsIn(start, end);
  const report: VerifyReport = {
    start,
    end,
    traces: 0,
    chains: chains.length,
    unchained: await source.unchainedIn(start, end),
    problems: [],
    clean: true,
  };
  const problems: TraceProblem[] = [];
  for (const c of chains.sort((a, b) => (a.writerId < b.writerId ? -1 : 1))) {
    await verifyChain(source, c, report, problems);
    if (problems.length >= maxProblems) break;
  }
  report.problems = problems.slice(0, maxProblems);
  report.clean = problems.length === 0;
  return report;
}

async function verifyChain(
  source: ChainSource,
  c: { writerId: string; first: number; last: number },
  report: VerifyReport,
  problems: TraceProblem[],
): Promise<void> {
  const w = c.writerId;
  // The traces just outside the range close its ends: a trace deleted at a boundary is a gap too.
  const before = await source.neighbour(w, c.first, -1);
  const after = await source.neighbour(w, c.last, 1);
  const flagged = new Map<TraceEvent, string>();

  // Window: p (predecessor by seq), r (current); r is classified once its successor n is known.
  let p: TraceEvent | undefined;
  let pending: TraceEvent | undefined;
  const classify = (r: TraceEvent, prev: TraceEvent | undefined, next: TraceEvent | undefined) => {
    const why = flagged.get(r);
    if (why === undefined) return;
    const outOfOrder =
      (prev !== undefined && (prev.at > r.at || prev.id > r.id)) ||
      (next !== undefined && (r.at > next.at || r.id > next.id));
    problems.push({
      kind: outOfOrder ? "reordered" : "edited",
      writerId: w,
      seq: r.seq as number,
      id: r.id,
      detail: outOfOrder ? `${why}, out of order with its neighbours in the chain` : why,
    });
  };
  let prevOfPending: TraceEvent | undefined;

  const visit = (r: TraceEvent) => {
    report.traces++;
    const seq = r.seq as number;
    if (p && seq === p.seq) {
      flagged.set(r, `a second trace with seq ${seq} (the first is ${p.id})`);
    } else {
      if (p && seq > (p.seq as number) + 1) {
        problems.push({
          kind: "missing",
          writerId: w,
          seq: (p.seq as number) + 1,
          count: seq - (p.seq as number) - 1,
          afterId: p.id,
          beforeId: r.id,
          detail: `${seq - (p.seq as number) - 1} trace(s) missing between ${p.id} and ${r.id}`,
        });
      } else if (!p && seq === 1 && r.prevHash !== "") {
        flagged.set(r, "first trace of its chain with a predecessor hash");
      }
      if (traceHash(r) !== r.hash) flagged.set(r, flagged.get(r) ?? "hash does not match its fields");
      // The link: an edited trace whose hash was recomputed shows in its successor's prevHash.
      if (p && seq === (p.seq as number) + 1 && r.prevHash !== p.hash && !flagged.has(p)) {
        flagged.set(p, "its hash does not match the next trace's link (edited, hash recomputed)");
      }
    }
    // Classify the previous current now that its successor (r) is known.
    if (pending) {
      classify(pending, prevOfPending, r);
      flagged.delete(pending);
    }
    prevOfPending = p;
    pending = r;
    if (!(p && seq === p.seq)) p = r;
  };

  if (before) visit(before);
  for await (const r of source.chain(w, c.first, c.last)) visit(r);
  if (after) visit(after);
  if (pending) classify(pending, prevOfPending, undefined);
  // The neighbours were counted as checked, but belong to the range only as links.
  report.traces -= (before ? 1 : 0) + (after ? 1 : 0);
}

/**
 * The chains of a store without a chain index (the memory store, the workers' primary): every trace
 * it holds, read once through `query` and grouped in memory. The memory store keeps the latest
 * traces only, so its chains start late: that is a chain's start, never a gap.
 */
export function chainsFromQuery(store: Pick<TraceStore, "query">): ChainSource {
  let loaded: Promise<Map<string, TraceEvent[]>> | undefined;
  const all = () =>
    (loaded ??= (async () => {
      const byWriter = new Map<string, TraceEvent[]>();
      let after: { at: number; id: string } | undefined;
      for (;;) {
        const page = await store.query({
          start: 0,
          end: Number.MAX_SAFE_INTEGER,
          limit: 10_000,
          ...(after ? { after } : {}),
        });
        for (const e of page) {
          if (e.writerId === undefined) continue;
          const chain = byWriter.get(e.writerId) ?? [];
          chain.push(e);
          byWriter.set(e.writerId, chain);
        }
        const last = page.at(-1);
        if (page.length < 10_000 || !last) break;
        after = { at: last.at, id: last.id };
      }
      for (const chain of byWriter.values()) chain.sort((a, b) => (a.seq as number) - (b.seq as number));
      return byWriter;
    })());
  return {
    async chainsIn(start, end) {
      const out: Array<{ writerId: string; first: number; last: number }> = [];
      for (const [writerId, chain] of await all()) {
        const inRange = chain.filter((e) => e.at >= start && e.at < end);
        if (inRange.length === 0) continue;
        const seqs = inRange.map((e) => e.seq as number);
        out.push({ writerId, first: Math.min(...seqs), last: Math.max(...seqs) });
      }
      return out;
    },
    async unchainedIn(start, end) {
      let n = 0;
      let after: { at: number; id: string } | undefined;
      for (;;) {
        const page = await store.query({ start, end, limit: 10_000, ...(after ? { after } : {}) });
        n += page.filter((e) => e.writerId === undefined).length;
        const last = page.at(-1);
        if (page.length < 10_000 || !last) return n;
        after = { at: last.at, id: last.id };
      }
    },
    async *chain(writerId, first, last) {
      for (const e of (await all()).get(writerId) ?? []) {
        if ((e.seq as number) >= first && (e.seq as number) <= last) yield e;
      }
    },
    async neighbour(writerId, seq, dir) {
      const chain = (await all()).get(writerId) ?? [];
      return dir < 0
        ? chain.filter((e) => (e.seq as number) < seq).at(-1)
        : chain.find((e) => (e.seq as number) > seq);
    },
  };
}
