/**
 * The life of one CIBA request on the replica that polls it, as a pure transition function:
 * (state, event, now) → (state, effects). No I/O, no timers: `ciba-poller.ts` performs the effects
 * (PSC poll, store writes, timers) and feeds their outcomes back as events.
 *
 * CIBA poll mode (OpenID CIBA Core 1.0 §7.3, §11): poll every `interval` seconds (5 when absent),
 * add 5 s on `slow_down`, stop at `expired_token`, `access_denied` or the request's expiry; an
 * unavailable PSC is never retried faster than the interval or its Retry-After.
 */
import type { CibaPollOutcome, IdClaims, PscTokens } from "./psc-gateway.ts";
import { acrSatisfies } from "./psc-gateway.ts";
import type { SessionView } from "./sessions.ts";

/** State of a CIBA request. */
export type CibaStatus = "PENDING" | "APPROVED" | "DENIED" | "EXPIRED" | "FAILED";

/** The shared state of a request, as the session store holds it for every replica. */
export interface CibaRecord {
  id: string;
  clientId: string;
  nationalId: string;
  bindingMessage: string;
  pscAuthReqId: string;
  status: CibaStatus;
  expiresAt: number;
  intervalMs: number;
  /** Once APPROVED, without its token (a single-use record of its own). */
  session?: SessionView;
  errorMessage?: string;
  /** When the next poll is due; written when a replica hands the request over (drain). */
  nextPollAt?: number;
}

/** Where the poller of one request stands. */
export interface CibaMachineState {
  rec: CibaRecord;
  /**
   * `waiting` for the next poll, `polling` PSC, `creating` the session after approval, `settled`
   * at a final state, `stopped` here without a final state (lease lost, or handed over).
   */
  phase: "waiting" | "polling" | "creating" | "settled" | "stopped";
  /** While waiting: when the next poll is due. */
  dueAt?: number;
  /** Set when the lease was lost or the replica drains while a call was in flight. */
  stopping?: "lease-lost" | "drain";
}

/** What happened to a request. */
export type CibaEvent =
  /** The wait is over: poll now (or expire). */
  | { type: "due" }
  /** PSC answered one poll. */
  | { type: "polled"; outcome: CibaPollOutcome }
  /** The session of an approved request exists; its token is handed out once. */
  | { type: "session-created"; session: SessionView; token: string }
  | { type: "session-failed"; message: string }
  /** An effect failed unexpectedly. */
  | { type: "crashed" }
  /** The poll lease was taken by another replica. */
  | { type: "lease-lost" }
  /** This replica stops: hand the request over. */
  | { type: "drain" };

/** What the poller must do, in order. */
export type CibaEffect =
  /** Send the next `due` after `ms`. */
  | { type: "wait"; ms: number }
  /** Poll PSC once and send `polled`. */
  | { type: "poll" }
  /** Write the record for the other replicas (interval changed). */
  | { type: "save" }
  /** Create the session and send `session-created` or `session-failed`. */
  | { type: "create-session"; tokens: PscTokens; claims: IdClaims }
  /**
   * The request reached a final state: store the token (single use), the record, drop the
   * pending index, trace it, release the lease, wake the watchers.
   */
  | { type: "settle"; token?: string }
  /** Stop polling here and give the lease back so another replica polls from `nextPollAt`. */
  | { type: "hand-over"; nextPollAt: number }
  /** Stop polling here; the lease is already someone else's. */
  | { type: "stop" };

/** A transition's outcome. */
export interface CibaTransition {
  state: CibaMachineState;
  effects: CibaEffect[];
}

/** What the transitions read besides the state. */
export interface CibaMachineContext {
  /** acr asked of PSC; a lower level reached is a failure, a higher one is accepted. */
  acrValues: string;
}

/** CIBA §11: slow_down adds 5 seconds to the interval for this and every later poll. */
export const SLOW_DOWN_STEP_MS = 5_000;
const MSG_EXPIRED = "the professional did not answer in time";

/** The poller's state on taking a request (first poll after `firstDelayMs`). */
export function startMachine(rec: CibaRecord, now: number, firstDelayMs: number): CibaTransition {
  return waitFor({ rec, phase: "waiting" }, now, firstDelayMs);
}

/** The transition function of a polled CIBA request. */
export function transition(
  s: CibaMachineState,
  e: CibaEvent,
  now: number,
  ctx: CibaMachineContext,
): CibaTransition {
  if (s.phase === "settled" || s.phase === "stopped") return { state: s, effects: [] };
  switch (e.type) {
    case "due":
      if (s.phase !== "waiting") return { state: s, effects: [] };
      if (now >= s.rec.expiresAt) return settle(s, "EXPIRED", MSG_EXPIRED);
      return { state: { ...s, phase: "polling" }, effects: [{ type: "poll" }] };
    case "polled":
      if (s.phase !== "polling") return { state: s, effects: [] };
      return polled(s, e.outcome, now, ctx);
    case "session-created":
      if (s.phase !== "creating") return { state: s, effects: [] };
      return settle({ ...s, rec: { ...s.rec, session: e.session } }, "APPROVED", undefined, e.token);
    case "session-failed":
      if (s.phase !== "creating") return { state: s, effects: [] };
      return settle(s, "FAILED", e.message);
    case "crashed":
      return settle(s, "FAILED", "internal error while waiting for the professional");
    case "lease-lost":
      // A call in flight finishes (an approval PSC hands out once must not be lost); then stop.
      if (s.phase !== "waiting") return { state: { ...s, stopping: "lease-lost" }, effects: [] };
      return { state: { ...s, phase: "stopped" }, effects: [{ type: "stop" }] };
    case "drain":
      if (s.phase !== "waiting") return { state: { ...s, stopping: s.stopping ?? "drain" }, effects: [] };
      return handOver(s, s.dueAt ?? now);
  }
}

function polled(
  s: CibaMachineState,
  o: CibaPollOutcome,
  now: number,
  ctx: CibaMachineContext,
): CibaTransition {
  const { rec } = s;
  switch (o.kind) {
    case "pending":
      return waitFor(s, now, rec.intervalMs);
    case "slow_down": {
      const next = { ...s, rec: { ...rec, intervalMs: rec.intervalMs + SLOW_DOWN_STEP_MS } };
      const t = waitFor(next, now, next.rec.intervalMs);
      return { state: t.state, effects: [{ type: "save" }, ...t.effects] };
    }
    case "unavailable":
      // Never retry-storm an unavailable PSC: wait at least the interval, or what Retry-After says.
      return waitFor(s, now, Math.max(rec.intervalMs, o.retryAfterMs ?? rec.intervalMs * 2));
    case "denied":
      return settle(s, "DENIED", "the professional refused the authentication");
    case "expired":
      return settle(s, "EXPIRED", MSG_EXPIRED);
    case "failed":
      return settle(s, "FAILED", o.message);
    case "approved":
      if (!acrSatisfies(o.claims.acr, ctx.acrValues)) {
        return settle(
          s,
          "FAILED",
          `authentication level ${o.claims.acr ?? "none"} is below ${ctx.acrValues}`,
        );
      }
      return {
        state: { ...s, phase: "creating" },
        effects: [{ type: "create-session", tokens: o.tokens, claims: o.claims }],
      };
  }
}

/** Waits `ms` (never past the expiry), unless the poller was told to stop meanwhile. */
function waitFor(s: CibaMachineState, now: number, ms: number): CibaTransition {
  const wait = Math.max(0, Math.min(ms, s.rec.expiresAt - now));
  if (s.stopping === "lease-lost") return { state: { ...s, phase: "stopped" }, effects: [{ type: "stop" }] };
  if (s.stopping === "drain") return handOver(s, now + wait);
  return { state: { ...s, phase: "waiting", dueAt: now + wait }, effects: [{ type: "wait", ms: wait }] };
}

/** The next poller keeps this one's pace: PSC answers slow_down to a poll that comes early. */
function handOver(s: CibaMachineState, nextPollAt: number): CibaTransition {
  return {
    state: { ...s, phase: "stopped", rec: { ...s.rec, nextPollAt } },
    effects: [{ type: "hand-over", nextPollAt }],
  };
}

function settle(
  s: CibaMachineState,
  status: Exclude<CibaStatus, "PENDING">,
  errorMessage?: string,
  token?: string,
): CibaTransition {
  const rec: CibaRecord = { ...s.rec, status, ...(errorMessage ? { errorMessage } : {}) };
  return {
    state: { ...s, rec, phase: "settled" },
    effects: [token ? { type: "settle", token } : { type: "settle" }],
  };
}
