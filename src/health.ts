/**
 * Readiness, honest and cheap: what eProxy cannot serve without (the session store) makes it not
 * ready; what only some calls need (PSC for logins and refreshes, MongoDB for trace storage behind
 * its spool) makes it `degraded` but still ready — taking every replica out of rotation because a
 * shared dependency is down would turn a partial outage into a total one. Slow checks (PSC over the
 * network) run in the background and their last result is answered; draining (SIGTERM) makes eProxy
 * not ready at once, before connections are closed.
 */

/** State of one dependency. */
export type CheckState = "ok" | "degraded" | "unavailable";

/** A dependency check. */
export interface HealthCheck {
  /** Name shown in `/readyz`. */
  name: string;
  /** `critical`: unavailable makes eProxy not ready; `degrading`: it only degrades it. */
  impact: "critical" | "degrading";
  /** Checked every `intervalMs` in the background and cached (for network probes). */
  background?: boolean;
  /** Resolves with the state (nothing = ok); a rejection or timeout is `unavailable`. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a probe that resolves with nothing is ok
  check(): Promise<CheckState | undefined | void>;
}

/** The readiness answer. */
export interface Readiness {
  /** Whether eProxy should receive traffic. */
  ready: boolean;
  status: "ok" | "degraded" | "unavailable" | "draining";
  checks: Record<string, CheckState>;
}

/** Readiness of this process. */
export interface Health {
  /** Runs the live checks and combines them with the cached background ones. */
  evaluate(): Promise<Readiness>;
  /** Last known readiness (no I/O). */
  current(): Readiness;
  /** Told when `ready` changes. Returns the unsubscribe function. */
  onChange(listener: (r: Readiness) => void): () => void;
  /** Flips readiness off for good (shutdown). */
  startDraining(): void;
  /** Stops the background checks. */
  close(): void;
}

async function run(c: HealthCheck, timeoutMs: number): Promise<CheckState> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const state = await Promise.race([
      c.check(),
      new Promise<CheckState>((resolve) => {
        timer = setTimeout(() => resolve("unavailable"), timeoutMs);
      }),
    ]);
    return state ?? "ok";
  } catch {
    // The cause is not shown: readiness is public and must not leak topology.
    return "unavailable";
  } finally {
    clearTimeout(timer);
  }
}

/** Creates the readiness tracker; background checks start at once. */
export function createHealth(
  checks: readonly HealthCheck[],
  opts: { intervalMs?: number; timeoutMs?: number } = {},
): Health {
  const intervalMs = opts.intervalMs ?? 5_000;
  const timeoutMs = opts.timeoutMs ?? 2_000;
  const cached = new Map<string, CheckState>();
  const listeners = new Set<(r: Readiness) => void>();
  let draining = false;
  let last: Readiness = { ready: true, status: "ok", checks: {} };

  function combine(states: Map<string, CheckState>): Readiness {
    const out: Record<string, CheckState> = {};
    let status: Readiness["status"] = "ok";
    for (const c of checks) {
      const s = states.get(c.name) ?? "ok";
      out[c.name] = s;
      if (s === "ok") continue;
      if (c.impact === "critical" && s === "unavailable") status = "unavailable";
      else if (status === "ok") status = "degraded";
    }
    if (draining) status = "draining";
    return { ready: status === "ok" || status === "degraded", status, checks: out };
  }

  function publish(r: Readiness): Readiness {
    const changed = r.ready !== last.ready;
    last = r;
    if (changed) for (const l of listeners) l(r);
    return r;
  }

  let first: Promise<void> | undefined;
  async function evaluate(): Promise<Readiness> {
    // Until the background checks answered once, their state is unknown: wait for them (bounded).
    await first;
    const states = new Map(cached);
    await Promise.all(
      checks.filter((c) => !c.background).map(async (c) => states.set(c.name, await run(c, timeoutMs))),
    );
    return publish(combine(states));
  }

  async function background(): Promise<void> {
    await Promise.all(
      checks.filter((c) => c.background).map(async (c) => cached.set(c.name, await run(c, timeoutMs))),
    );
  }
  first = background().then(() => {
    first = undefined;
  });
  const timer = setInterval(() => void background().then(evaluate), intervalMs);
  timer.unref();

  return {
    evaluate,
    current: () => last,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    startDraining() {
      draining = true;
      publish(combine(new Map(Object.entries(last.checks))));
    },
    close() {
      clearInterval(timer);
      listeners.clear();
    },
  };
}
