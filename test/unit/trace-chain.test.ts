/**
 * The chain's hashing and its verification over an in-memory source (the MongoDB adapter is
 * covered by test/int/trace-verify.int.test.ts).
 */
import { describe, expect, it } from "vitest";
import { CHAINED_FIELDS, canonicalTrace, createTraceChain, traceHash } from "../../src/trace/chain.ts";
import { type TraceEvent, type TraceQuery, toEvent } from "../../src/trace/traces.ts";
import { chainsFromQuery, verifyTraces } from "../../src/trace/verify.ts";

function chained(n: number, writerId = "w1"): TraceEvent[] {
  const chain = createTraceChain(writerId);
  const t0 = Date.now() - 10_000;
  const events = Array.from({ length: n }, (_, i) =>
    toEvent({ type: "SEND", clientId: "lps-demo", durationMs: i, outcome: "OK" }, t0 + Math.floor(i / 3)),
  );
  chain.seal(events);
  return events;
}

/** A store over an array (what an attacker with write access to it can change). */
const over = (events: TraceEvent[]) =>
  chainsFromQuery({
    async query(q: TraceQuery) {
      return events
        .filter((e) => e.at >= q.start && e.at < q.end)
        .filter((e) => !q.after || e.at > q.after.at || (e.at === q.after.at && e.id > q.after.id))
        .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1))
        .slice(0, q.limit);
    },
  });
const verify = (events: TraceEvent[]) => verifyTraces(over(events), 0, Date.now() + 1);

describe("trace chain", () => {
  it("links each trace to the previous one's hash, from an empty one", () => {
    const e = chained(4);
    expect(e.map((x) => x.seq)).toEqual([1, 2, 3, 4]);
    expect(e[0]?.prevHash).toBe("");
    for (let i = 1; i < 4; i++) expect(e[i]?.prevHash).toBe(e[i - 1]?.hash);
    for (const x of e) expect(x.hash).toBe(traceHash(x));
  });

  it("encodes exactly CHAINED_FIELDS, in order", () => {
    const [e] = chained(1) as [TraceEvent];
    const full = Object.fromEntries(
      CHAINED_FIELDS.map((f, i) => [f, f === "at" || f === "seq" ? i : `v${i}`]),
    );
    expect(canonicalTrace(full as unknown as TraceEvent)).toBe(
      `t1${JSON.stringify(CHAINED_FIELDS.map((f, i) => (f === "at" || f === "seq" ? i : `v${i}`)))}`,
    );
    expect(canonicalTrace(e)).toBe(
      `t1${JSON.stringify(CHAINED_FIELDS.map((f) => e[f] ?? null).slice(0, CHAINED_FIELDS.length))}`,
    );
  });

  it("hashes an absent field and a stored null alike, and leaves trailing absent fields out", () => {
    const [e] = chained(1) as [TraceEvent];
    expect(traceHash({ ...e, nationalId: null } as unknown as TraceEvent)).toBe(e.hash);
    expect(canonicalTrace(e).endsWith('""]')).toBe(true);
    expect(traceHash({ ...e, outcome: "DENIED" })).not.toBe(e.hash);
  });

  it("verifies a clean record of two writers, and finds a deletion, an edit and a swap", async () => {
    const clean = [...chained(20, "a"), ...chained(20, "b")];
    expect(await verify(clean)).toMatchObject({ clean: true, traces: 40, chains: 2 });

    const deleted = clean.filter((e) => !(e.writerId === "a" && e.seq === 7));
    expect((await verify(deleted)).problems).toEqual([
      expect.objectContaining({ kind: "missing", writerId: "a", seq: 7, count: 1 }),
    ]);

    const edited = clean.map((e) =>
      e.writerId === "b" && e.seq === 3 ? { ...e, clientId: "lps-other" } : e,
    );
    expect((await verify(edited)).problems.map((p) => [p.kind, p.writerId, p.seq])).toEqual([
      ["edited", "b", 3],
    ]);

    const a = clean[4] as TraceEvent;
    const b = clean[11] as TraceEvent;
    const swapped = clean.map((e) =>
      e === a
        ? { ...e, seq: b.seq, prevHash: b.prevHash, hash: b.hash }
        : e === b
          ? { ...e, seq: a.seq, prevHash: a.prevHash, hash: a.hash }
          : e,
    );
    expect((await verify(swapped)).problems.map((p) => [p.kind, p.id]).sort()).toEqual(
      [
        ["reordered", a.id],
        ["reordered", b.id],
      ].sort(),
    );
  });
});
