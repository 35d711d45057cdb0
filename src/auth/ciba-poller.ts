/**
 * Runs the CIBA machine of every request this replica polls: performs its effects (PSC poll, store
 * writes, timers, the poll lease and its renewals) and feeds their outcomes back as events, one
 * at a time per request.
 */
import type { Logger } from "pino";
import { EproxyError } from "../errors.ts";
import {
  type CibaEffect,
  type CibaEvent,
  type CibaMachineState,
  type CibaRecord,
  type CibaTransition,
  startMachine,
  transition,
} from "./ciba-machine.ts";
import { type CibaClock, type CibaStore, retryWhileStoreDown } from "./ciba-store.ts";
import type { IdClaims, PscGateway, PscTokens } from "./psc-gateway.ts";
import type { SessionView } from "./sessions.ts";
import type { Lease } from "./store.ts";

/** The poll lease; renewed every third of it while the request is polled here. */
export const POLL_LEASE_MS = 30_000;

/** What the poller needs. */
export interface CibaPollerDeps {
  store: CibaStore;
  psc: Pick<PscGateway, "pollCiba">;
  /** Creates the session of an approved request (an EproxyError's message is shown to the caller). */
  createSession(
    rec: CibaRecord,
    tokens: PscTokens,
    claims: IdClaims,
  ): Promise<{ session: SessionView; token: string }>;
  /** Told of every final state reached here (traces, misuse counters). */
  settled(rec: CibaRecord): void;
  /** acr asked of PSC. */
  acrValues: string;
  clock: CibaClock;
  log: Logger;
}

/** The requests this replica polls. */
export interface CibaPoller {
  /** Polls a request under `lease`; the first poll after `firstDelayMs`. */
  own(rec: CibaRecord, lease: Lease, firstDelayMs: number): void;
  /** The current record of a request polled here (fresher than the store between writes). */
  get(id: string): CibaRecord | undefined;
  /** How many requests of a client are polled here. */
  countFor(clientId: string): number;
  /** How many requests are polled here. */
  size(): number;
  /**
   * Hands every request over to the other replicas: waiting ones at once, those with a PSC call
   * in flight once it answers (an approval PSC gives once is not lost). Later `own` calls hand
   * over at once. Resolves when no request is polled here any more.
   */
  drain(): Promise<void>;
}

interface Polled {
  state: CibaMachineState;
  lease: Lease;
  timer?: unknown;
  renewTimer?: unknown;
  /** Events are applied one at a time. */
  queue: Promise<void>;
  ended: Promise<void>;
  end(): void;
}

/** Creates the poller. */
export function createCibaPoller(deps: CibaPollerDeps): CibaPoller {
  const { store, psc, clock, log } = deps;
  const ctx = { acrValues: deps.acrValues };
  const polled = new Map<string, Polled>();
  let draining = false;

  function enqueue(p: Polled, next: () => CibaTransition): void {
    p.queue = p.queue.then(async () => {
      try {
        const t = next();
        p.state = t.state;
        for (const effect of t.effects) await perform(p, effect);
      } catch (err) {
        log.error({ err }, "CIBA poller failed");
        if (p.state.phase !== "settled" && p.state.phase !== "stopped") dispatch(p, { type: "crashed" });
      }
    });
  }

  function dispatch(p: Polled, e: CibaEvent): void {
    enqueue(p, () => transition(p.state, e, clock.now(), ctx));
  }

  function renewLater(p: Polled): void {
    p.renewTimer = clock.setTimeout(() => {
      p.lease.renew().then(
        (held) => {
          if (polled.get(p.state.rec.id) !== p) return;
          if (held) renewLater(p);
          else dispatch(p, { type: "lease-lost" });
        },
        // The store is unreachable: try again later; the lease may still be ours.
        () => renewLater(p),
      );
    }, POLL_LEASE_MS / 3);
  }

  /** Forgets a request here (its timers included). */
  function forget(p: Polled): void {
    clock.clearTimeout(p.timer);
    clock.clearTimeout(p.renewTimer);
    polled.delete(p.state.rec.id);
    p.end();
  }

  /** Stops polling a request here: its last writes, then the lease given back and the watchers woken. */
  async function letGo(p: Polled, failure: string, write: () => Promise<void>): Promise<void> {
    forget(p);
    try {
      // The end of a request (its token above all) is retried through a store failover.
      await retryWhileStoreDown(clock, write);
    } catch (err) {
      log.error({ err: (err as Error).message }, failure);
    } finally {
      await p.lease.release().catch(() => {});
      await store.changed(p.state.rec.id).catch(() => {});
    }
  }

  async function perform(p: Polled, effect: CibaEffect): Promise<void> {
    const rec = p.state.rec;
    switch (effect.type) {
      case "wait":
        p.timer = clock.setTimeout(() => dispatch(p, { type: "due" }), effect.ms);
        return;
      case "poll":
        // Not awaited: the answer comes back as an event, so a drain or a lease loss meanwhile is seen.
        psc.pollCiba(rec.clientId, rec.pscAuthReqId).then(
          (outcome) => dispatch(p, { type: "polled", outcome }),
          (err: unknown) => {
            log.error({ err }, "CIBA poll failed");
            dispatch(p, { type: "crashed" });
          },
        );
        return;
      case "save":
        // The interval for the other replicas; this poller goes on with its own copy if the write fails.
        await store.save(rec).catch((err: unknown) => {
          log.warn({ err: (err as Error).message }, "could not store a CIBA request's new interval");
        });
        return;
      case "create-session":
        // PSC's tokens are in hand: a store failover meanwhile must not turn the approval into FAILED.
        retryWhileStoreDown(clock, () => deps.createSession(rec, effect.tokens, effect.claims)).then(
          ({ session, token }) => dispatch(p, { type: "session-created", session, token }),
          (err: unknown) => {
            log.warn({ err: (err as Error).message }, "session creation after CIBA approval failed");
            const message = err instanceof EproxyError ? err.message : "session creation failed";
            dispatch(p, { type: "session-failed", message });
          },
        );
        return;
      case "settle":
        deps.settled(rec);
        return letGo(p, "could not store the end of a CIBA request", async () => {
          if (effect.token) await store.putToken(rec.id, effect.token);
          await store.save(rec);
          await store.clearPending(rec);
        });
      case "hand-over":
        // If the write fails, the next poller polls at once: one early poll at worst (PSC may
        // answer slow_down). The lease is given back at once: another replica takes over now,
        // not when the lease expires.
        await letGo(p, "could not store a CIBA request handed over", () => store.save(rec));
        await store.handedOver(rec.id).catch(() => {});
        return;
      case "stop":
        log.info({ clientId: rec.clientId }, "CIBA request polled by another replica now");
        forget(p);
        return;
    }
  }

  return {
    own(rec, lease, firstDelayMs) {
      let end = () => {};
      const ended = new Promise<void>((resolve) => {
        end = resolve;
      });
      const first = startMachine(rec, clock.now(), firstDelayMs);
      const p: Polled = { state: first.state, lease, queue: Promise.resolve(), ended, end };
      polled.set(rec.id, p);
      renewLater(p);
      enqueue(p, () => first);
      if (draining) dispatch(p, { type: "drain" });
    },

    get: (id) => polled.get(id)?.state.rec,

    size: () => polled.size,

    countFor(clientId) {
      let n = 0;
      for (const p of polled.values()) if (p.state.rec.clientId === clientId) n++;
      return n;
    },

    async drain() {
      draining = true;
      const all = [...polled.values()];
      for (const p of all) dispatch(p, { type: "drain" });
      // `ended` comes when a request is forgotten, at the start of its last step (letGo): its last
      // writes, the lease given back and the watchers woken come after, in the same step of its
      // queue. Waiting for the queue too means that the store may close once drain() resolves.
      await Promise.all(
        all.map(async (p) => {
          await p.ended;
          await p.queue;
        }),
      );
    },
  };
}
