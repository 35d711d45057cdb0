import { describe, expect, it } from "vitest";
import {
  type CibaEvent,
  type CibaMachineState,
  type CibaRecord,
  startMachine,
  transition,
} from "../../src/auth/ciba-machine.ts";
import type { SessionView } from "../../src/auth/sessions.ts";

const ctx = { acrValues: "eidas1" };
const T0 = 1_000_000;

function record(over: Partial<CibaRecord> = {}): CibaRecord {
  return {
    id: "req",
    clientId: "lps-demo",
    nationalId: "899700218896",
    bindingMessage: "42",
    pscAuthReqId: "psc-1",
    status: "PENDING",
    expiresAt: T0 + 120_000,
    intervalMs: 5_000,
    ...over,
  };
}

/** Runs events in order from a fresh machine, returning every transition. */
function run(rec: CibaRecord, events: Array<[CibaEvent, number]>) {
  let t = startMachine(rec, T0, rec.intervalMs);
  const steps = [t];
  for (const [e, now] of events) {
    t = transition(t.state, e, now, ctx);
    steps.push(t);
  }
  return { last: t, steps };
}

const approved = (acr = "eidas1"): CibaEvent => ({
  type: "polled",
  outcome: {
    kind: "approved",
    tokens: { accessToken: "at", accessExpiresAt: T0 + 120_000 },
    claims: { sub: "899700218896", acr },
  },
});

describe("CIBA machine", () => {
  it("waits the interval, polls when due, and waits the interval again while pending", () => {
    const { steps } = run(record(), [
      [{ type: "due" }, T0 + 5_000],
      [{ type: "polled", outcome: { kind: "pending" } }, T0 + 5_100],
    ]);
    expect(steps.map((s) => s.effects)).toEqual([
      [{ type: "wait", ms: 5_000 }],
      [{ type: "poll" }],
      [{ type: "wait", ms: 5_000 }],
    ]);
    expect(steps[2]?.state.phase).toBe("waiting");
  });

  it("slow_down adds 5 s to this and every later interval, and saves it for the other replicas", () => {
    const { steps, last } = run(record(), [
      [{ type: "due" }, T0 + 5_000],
      [{ type: "polled", outcome: { kind: "slow_down" } }, T0 + 5_000],
      [{ type: "due" }, T0 + 15_000],
      [{ type: "polled", outcome: { kind: "pending" } }, T0 + 15_000],
    ]);
    expect(steps[2]?.effects).toEqual([{ type: "save" }, { type: "wait", ms: 10_000 }]);
    expect(last.effects).toEqual([{ type: "wait", ms: 10_000 }]);
    expect(last.state.rec.intervalMs).toBe(10_000);
  });

  it("an unavailable PSC is retried after Retry-After, never before the interval", () => {
    const unavailable = (retryAfterMs?: number): CibaEvent => ({
      type: "polled",
      outcome: retryAfterMs === undefined ? { kind: "unavailable" } : { kind: "unavailable", retryAfterMs },
    });
    const due: [CibaEvent, number] = [{ type: "due" }, T0];
    expect(run(record(), [due, [unavailable(30_000), T0]]).last.effects).toEqual([
      { type: "wait", ms: 30_000 },
    ]);
    // A Retry-After shorter than the interval does not make polls more frequent.
    expect(run(record(), [due, [unavailable(1_000), T0]]).last.effects).toEqual([
      { type: "wait", ms: 5_000 },
    ]);
    // Without Retry-After: twice the interval.
    expect(run(record(), [due, [unavailable(), T0]]).last.effects).toEqual([{ type: "wait", ms: 10_000 }]);
  });

  it("never waits past the expiry, and expires when due after it", () => {
    const rec = record({ expiresAt: T0 + 3_000 });
    expect(startMachine(rec, T0, 5_000).effects).toEqual([{ type: "wait", ms: 3_000 }]);
    const { last } = run(rec, [[{ type: "due" }, T0 + 3_000]]);
    expect(last.state.phase).toBe("settled");
    expect(last.state.rec.status).toBe("EXPIRED");
    expect(last.state.rec.errorMessage).toMatch(/did not answer in time/);
    expect(last.effects).toEqual([{ type: "settle" }]);
  });

  it("ends in DENIED, EXPIRED or FAILED as PSC says", () => {
    const due: [CibaEvent, number] = [{ type: "due" }, T0 + 5_000];
    const end = (outcome: any) => run(record(), [due, [{ type: "polled", outcome }, T0 + 5_000]]).last;
    expect(end({ kind: "denied" }).state.rec).toMatchObject({ status: "DENIED", errorMessage: /refused/ });
    expect(end({ kind: "expired" }).state.rec.status).toBe("EXPIRED");
    expect(end({ kind: "failed", message: "invalid_grant" }).state.rec).toMatchObject({
      status: "FAILED",
      errorMessage: "invalid_grant",
    });
    expect(end({ kind: "denied" }).effects).toEqual([{ type: "settle" }]);
  });

  it("approval creates the session, then settles with its single-use token", () => {
    const session = { sessionId: "s1" } as SessionView;
    const { steps, last } = run(record(), [
      [{ type: "due" }, T0 + 5_000],
      [approved("eidas2"), T0 + 5_000],
      [{ type: "session-created", session, token: "eps_x" }, T0 + 5_050],
    ]);
    expect(steps[2]?.effects).toEqual([
      {
        type: "create-session",
        tokens: expect.any(Object),
        claims: expect.objectContaining({ acr: "eidas2" }),
      },
    ]);
    expect(last.state.rec).toMatchObject({ status: "APPROVED", session });
    expect(last.effects).toEqual([{ type: "settle", token: "eps_x" }]);
  });

  it("refuses an acr below the one asked, and reports a failed session creation", () => {
    const low = run(record(), [
      [{ type: "due" }, T0],
      [approved("eidas0"), T0],
    ]).last;
    expect(low.state.rec).toMatchObject({ status: "FAILED", errorMessage: /below eidas1/ });
    const failed = run(record(), [
      [{ type: "due" }, T0],
      [approved(), T0],
      [{ type: "session-failed", message: "client removed" }, T0],
    ]).last;
    expect(failed.state.rec).toMatchObject({ status: "FAILED", errorMessage: "client removed" });
  });

  it("stops at once when the lease is lost while waiting", () => {
    const { last } = run(record(), [[{ type: "lease-lost" }, T0 + 1_000]]);
    expect(last.state.phase).toBe("stopped");
    expect(last.effects).toEqual([{ type: "stop" }]);
    // Nothing moves a stopped machine.
    expect(transition(last.state, { type: "due" }, T0 + 5_000, ctx).effects).toEqual([]);
  });

  it("lets a poll in flight finish when the lease is lost: a final answer settles, a pending one stops", () => {
    const lost: Array<[CibaEvent, number]> = [
      [{ type: "due" }, T0 + 5_000],
      [{ type: "lease-lost" }, T0 + 5_010],
    ];
    const approvedAfter = run(record(), [...lost, [approved(), T0 + 5_020]]).last;
    expect(approvedAfter.effects[0]?.type).toBe("create-session");
    const pendingAfter = run(record(), [
      ...lost,
      [{ type: "polled", outcome: { kind: "pending" } }, T0 + 5_020],
    ]);
    expect(pendingAfter.last.effects).toEqual([{ type: "stop" }]);
  });

  it("hands over on drain with the time the next poll is due, also after a poll in flight", () => {
    // Waiting since T0 for a poll due at T0 + 5 s: the next poller polls then, not at once.
    const idle = run(record(), [[{ type: "drain" }, T0 + 2_000]]).last;
    expect(idle.effects).toEqual([{ type: "hand-over", nextPollAt: T0 + 5_000 }]);
    expect(idle.state.phase).toBe("stopped");
    const busy = run(record(), [
      [{ type: "due" }, T0 + 5_000],
      [{ type: "drain" }, T0 + 5_010],
      [{ type: "polled", outcome: { kind: "slow_down" } }, T0 + 5_020],
    ]).last;
    expect(busy.effects).toEqual([{ type: "save" }, { type: "hand-over", nextPollAt: T0 + 15_020 }]);
    expect(busy.state.rec).toMatchObject({ intervalMs: 10_000, nextPollAt: T0 + 15_020 });
  });

  it("ignores events that do not fit the phase (a late timer, a duplicate answer)", () => {
    const s: CibaMachineState = { rec: record(), phase: "waiting" };
    expect(transition(s, { type: "polled", outcome: { kind: "denied" } }, T0, ctx).effects).toEqual([]);
    const polling: CibaMachineState = { rec: record(), phase: "polling" };
    expect(transition(polling, { type: "due" }, T0, ctx).effects).toEqual([]);
  });
});
