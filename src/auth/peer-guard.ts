/**
 * A circuit breaker for one outbound endpoint (PSC's token endpoint, a teleservice's authorization
 * server): after a few consecutive outage failures it opens for an exponentially growing, jittered
 * delay (at least the peer's Retry-After); while open no call leaves. The open state is shared by
 * the process and, through the store (a fixed window as the "open until" marker, a lease for the
 * half-open probe), by every replica, so an outage costs the peer a bounded number of calls
 * whatever the request rate or the replica count.
 *
 * Why not cockatiel: its breaker keeps its state in one process, queues half-open callers behind
 * the probe (a relay would wait for a slow PSC) and cannot take a peer's Retry-After as the open
 * duration; the store-shared variant below needs all three.
 */
import type { Logger } from "pino";
import { EproxyError } from "../errors.ts";
import type { Metrics } from "../observe/telemetry.ts";
import type { AuthStore } from "./store.ts";

/** Thrown instead of calling the peer while the breaker is open. */
export class PeerOpenError extends Error {
  /** The guarded endpoint's name. */
  readonly peer: string;
  /** When a call may be tried again. */
  readonly retryAfterMs: number;

  constructor(peer: string, retryAfterMs: number) {
    super(`${peer}: circuit open`);
    this.name = "PeerOpenError";
    this.peer = peer;
    this.retryAfterMs = Math.max(0, retryAfterMs);
  }
}

/** Options of a peer guard. */
export interface PeerGuardOptions {
  /** Endpoint name, used in store keys and logs (e.g. `psc-token`, `as:dmp`). */
  name: string;
  /** Shared state across replicas; without it the breaker is per process. */
  store?: Pick<AuthStore, "hit" | "peek" | "tryLease">;
  /** True for failures that mean the peer is down (not for a refusal such as invalid_grant). */
  isOutage(err: unknown): boolean;
  /** The peer's Retry-After, when the failure carries one. */
  retryAfterMsOf?(err: unknown): number | undefined;
  /** Consecutive outage failures that open the breaker. */
  failureThreshold?: number;
  /** First open duration; doubles (with jitter) on every failed probe up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /**
   * Calls in flight at once from this process (others wait for a slot): bounds the burst that
   * reaches a peer at the onset of an outage, before the first failure opens the breaker.
   */
  maxConcurrent?: number;
  /** Length of the window in which one failure trace is written for this endpoint. */
  traceWindowMs?: number;
  /** Told when an incident starts (breaker opens) and ends (first success after it). */
  onIncident?(e: { phase: "start" | "end"; peer: string; err?: unknown; retryAfterMs?: number }): void;
  now?: () => number;
  random?: () => number;
}

/** A guarded endpoint. */
export interface PeerGuard {
  /** The endpoint's name. */
  readonly name: string;
  /** Runs `call` unless the breaker is open (then throws PeerOpenError without calling). */
  run<T>(call: () => Promise<T>): Promise<T>;
  /** Milliseconds until a call may be tried (0 when closed), as this process knows it. */
  openForMs(): number;
  /** True once per trace window (shared by replicas): whether a failure trace should be written now. */
  claimFailureTrace(): Promise<boolean>;
  /** Calls that reached the peer (for tests and diagnostics). */
  readonly calls: number;
}

/** Creates a guard for one endpoint. */
export function createPeerGuard(o: PeerGuardOptions): PeerGuard {
  const now = o.now ?? Date.now;
  const random = o.random ?? Math.random;
  const threshold = o.failureThreshold ?? 3;
  const initial = o.initialDelayMs ?? 1_000;
  const max = o.maxDelayMs ?? 30_000;
  const traceWindowMs = o.traceWindowMs ?? 60_000;
  const openKey = `breaker-open:${o.name}`;
  const probeKey = `breaker-probe:${o.name}`;
  let failures = 0;
  let openUntil = 0;
  let delay = initial;
  let incident = false;
  let probing = false;
  let calls = 0;
  let localTraceWindowEnd = 0;
  const maxConcurrent = o.maxConcurrent ?? 4;
  let inFlight = 0;
  const queue: Array<() => void> = [];
  async function slot(): Promise<() => void> {
    if (inFlight >= maxConcurrent) await new Promise<void>((r) => queue.push(r));
    inFlight++;
    return () => {
      inFlight--;
      queue.shift()?.();
    };
  }

  /** Equal jitter: half the delay fixed, half random, so replicas do not probe in step. */
  const jittered = (d: number) => Math.round(d / 2 + random() * (d / 2));

  function open(err: unknown, probeFailed: boolean): void {
    if (probeFailed) delay = Math.min(max, delay * 2);
    const retryAfter = o.retryAfterMsOf?.(err) ?? 0;
    const d = Math.max(jittered(delay), retryAfter);
    openUntil = now() + d;
    // Every replica reads this marker before calling: one replica's evidence stops them all.
    o.store?.hit(openKey, d).catch(() => {});
    if (!incident) {
      incident = true;
      o.onIncident?.({ phase: "start", peer: o.name, err, retryAfterMs: d });
    }
  }

  return {
    name: o.name,
    get calls() {
      return calls;
    },
    openForMs: () => Math.max(0, openUntil - now()),

    async run<T>(call: () => Promise<T>): Promise<T> {
      if (now() < openUntil) throw new PeerOpenError(o.name, openUntil - now());
      const release = await slot();
      try {
        return await attempt(call);
      } finally {
        release();
      }
    },

    async claimFailureTrace() {
      if (o.store) {
        const w = await o.store.hit(`breaker-trace:${o.name}`, traceWindowMs).catch(() => undefined);
        if (w) return w.count === 1;
      }
      const t = now();
      if (t < localTraceWindowEnd) return false;
      localTraceWindowEnd = t + traceWindowMs;
      return true;
    },
  };

  /** One call, the breaker closed or half-open (the slot is held). */
  async function attempt<T>(call: () => Promise<T>): Promise<T> {
    const t = now();
    if (t < openUntil) throw new PeerOpenError(o.name, openUntil - t);
    const shared = await o.store?.peek(openKey).catch(() => undefined);
    if (shared && shared.count > 0 && shared.resetAt > t) {
      openUntil = shared.resetAt;
      if (!incident) {
        incident = true;
        failures = Math.max(failures, threshold);
        o.onIncident?.({ phase: "start", peer: o.name, retryAfterMs: shared.resetAt - t });
      }
      throw new PeerOpenError(o.name, shared.resetAt - t);
    }
    const halfOpen = failures >= threshold;
    if (halfOpen) {
      // One probe at a time in this process, and one per open period across replicas: the lease
      // is kept (not released) after a failed probe so that it spaces the next one.
      if (probing) throw new PeerOpenError(o.name, Math.min(delay, 1_000));
      const lease = o.store ? await o.store.tryLease(probeKey, delay).catch(() => null) : undefined;
      if (lease === undefined && o.store) {
        openUntil = t + Math.min(delay, 1_000);
        throw new PeerOpenError(o.name, openUntil - t);
      }
      probing = true;
      try {
        calls++;
        const out = await call();
        await lease?.release().catch(() => {});
        failures = 0;
        delay = initial;
        openUntil = 0;
        if (incident) {
          incident = false;
          o.onIncident?.({ phase: "end", peer: o.name });
        }
        return out;
      } catch (err) {
        if (o.isOutage(err)) open(err, true);
        else {
          // The peer answered (a refusal): it is up again.
          await lease?.release().catch(() => {});
          failures = 0;
          delay = initial;
          if (incident) {
            incident = false;
            o.onIncident?.({ phase: "end", peer: o.name });
          }
        }
        throw err;
      } finally {
        probing = false;
      }
    }
    try {
      calls++;
      const out = await call();
      failures = 0;
      if (incident) {
        incident = false;
        o.onIncident?.({ phase: "end", peer: o.name });
      }
      return out;
    } catch (err) {
      if (o.isOutage(err)) {
        failures++;
        const retryAfter = o.retryAfterMsOf?.(err);
        // A peer that says when to come back is believed at once.
        if (failures >= threshold || retryAfter !== undefined) {
          failures = Math.max(failures, threshold);
          open(err, false);
        }
      } else failures = 0;
      throw err;
    }
  }
}

/** Where a reported guard tells of its incidents. */
export interface GuardReporting {
  /** The breaker-state gauge (closed at creation, open/closed on each incident). */
  metrics?: Pick<Metrics, "breakerState"> | undefined;
  /** One warn line when an incident starts, one info line when it ends. */
  log?: Pick<Logger, "warn" | "info"> | undefined;
  /** Message of the warn line (what stops and what is still used meanwhile). */
  failing: string;
  /** Message of the info line. */
  recovered: string;
}

/**
 * Creates a guard for a peer whose failures arrive as EproxyErrors: the Retry-After they carry sets
 * the open time, and each incident is reported once to the breaker-state metric and the log.
 */
export function createReportedPeerGuard(
  o: Omit<PeerGuardOptions, "retryAfterMsOf" | "onIncident"> & GuardReporting,
): PeerGuard {
  const { metrics, log, failing, recovered, ...options } = o;
  const guard = createPeerGuard({
    ...options,
    retryAfterMsOf: (e) =>
      e instanceof EproxyError && e.retryAfterSeconds !== undefined ? e.retryAfterSeconds * 1000 : undefined,
    onIncident: (e) => {
      metrics?.breakerState(e.peer, e.phase === "start" ? "open" : "closed");
      if (e.phase === "start") {
        log?.warn(
          { peer: e.peer, retryAfterMs: e.retryAfterMs, err: (e.err as Error | undefined)?.message },
          failing,
        );
      } else log?.info({ peer: e.peer }, recovered);
    },
  });
  metrics?.breakerState(guard.name, "closed");
  return guard;
}
