/**
 * Misuse alerts: thresholds on CIBA failures per professional and on relayed calls per session,
 * counted in the session store (so every replica sees the same counts). Crossing a threshold
 * records one ALERT trace and one log line per window, and — when the threshold blocks — refuses
 * further requests with TOO_MANY_REQUESTS (and Retry-After) until the window ends.
 */
import { hash } from "node:crypto";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Traces } from "../trace/traces.ts";
import type { AuthStore, WindowCount } from "./store.ts";

/** What the authentication and relay code report. */
export interface MisuseGuard {
  /** Before a CIBA push for this professional: throws TOO_MANY_REQUESTS while blocked. */
  beforeCiba(nationalId: string): Promise<void>;
  /** A CIBA request for this professional ended in failure (denied, expired, refused). */
  cibaFailed(nationalId: string, clientId: string): Promise<void>;
  /**
   * Window (ms) in which relayed calls of a session are counted, undefined when they are not:
   * given to `Sessions.freshCounted`, it counts a call with its session lookup (one store
   * operation instead of two).
   */
  readonly relayWindowMs: number | undefined;
  /**
   * Counts one relayed call; throws TOO_MANY_REQUESTS when over the limit and blocking. `uses`:
   * the count already taken with the session lookup (`Sessions.freshCounted`); without it, the
   * call is counted here.
   */
  relayed(session: { id: string; nationalId: string }, clientId: string, uses?: WindowCount): Promise<void>;
}

type Threshold = NonNullable<Config["alerts"]["cibaFailures"]>;

const professionalKey = (nationalId: string) => `alert:ciba:${hash("sha256", nationalId, "hex")}`;

/** Creates the guard. */
export function createMisuseGuard(deps: {
  config: Readonly<Config>;
  store: AuthStore;
  traces: Traces;
  log: Logger;
  now?: () => number;
}): MisuseGuard {
  const { store, traces, log } = deps;
  const now = deps.now ?? Date.now;
  const { cibaFailures, relaysPerSession } = deps.config.alerts;

  const retryIn = (resetAt: number) => Math.max(1, Math.ceil((resetAt - now()) / 1000));

  function alert(kind: string, t: Threshold, count: number, who: Record<string, string>): void {
    const outcome = `${kind}: more than ${t.max} in ${t.windowSeconds} s${t.block ? " (blocked)" : ""}`;
    traces.record({ type: "ALERT", ...who, outcome });
    // The log line names the client and hashed ids only: no professional or patient identifier.
    log.warn(
      { alert: kind, clientId: who.clientId, count, max: t.max, windowSeconds: t.windowSeconds },
      "misuse alert",
    );
  }

  return {
    async beforeCiba(nationalId) {
      if (!cibaFailures?.block) return;
      const c = await store.peek(professionalKey(nationalId));
      if (c.count > cibaFailures.max) {
        throw new EproxyError(
          "TOO_MANY_REQUESTS",
          `too many failed authentications for this professional; try again in ${retryIn(c.resetAt)} s`,
          { retryAfterSeconds: retryIn(c.resetAt) },
        );
      }
    },

    async cibaFailed(nationalId, clientId) {
      if (!cibaFailures) return;
      try {
        const c = await store.hit(professionalKey(nationalId), cibaFailures.windowSeconds * 1000);
        if (c.count === cibaFailures.max + 1) {
          alert("CIBA_FAILURES", cibaFailures, c.count, { clientId, nationalId });
        }
      } catch (err) {
        log.warn({ err: (err as Error).message }, "could not count a CIBA failure");
      }
    },

    relayWindowMs: relaysPerSession ? relaysPerSession.windowSeconds * 1000 : undefined,

    async relayed(session, clientId, uses) {
      if (!relaysPerSession) return;
      const c = uses ?? (await store.hit(`alert:relay:${session.id}`, relaysPerSession.windowSeconds * 1000));
      if (c.count <= relaysPerSession.max) return;
      if (c.count === relaysPerSession.max + 1) {
        alert("RELAY_RATE", relaysPerSession, c.count, {
          clientId,
          nationalId: session.nationalId,
          sessionId: session.id,
        });
      }
      if (relaysPerSession.block) {
        throw new EproxyError(
          "TOO_MANY_REQUESTS",
          `more than ${relaysPerSession.max} relayed calls in ${relaysPerSession.windowSeconds} s for this session; try again in ${retryIn(c.resetAt)} s`,
          { retryAfterSeconds: retryIn(c.resetAt) },
        );
      }
    },
  };
}
