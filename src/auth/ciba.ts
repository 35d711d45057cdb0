/**
 * CIBA requests: validation, reuse (no duplicate push), one background poller per request that
 * honours PSC's interval, slow_down, Retry-After and expiry, and state changes pushed to watchers.
 *
 * The state of a request lives in the session store, so any replica answers PollCiba/WatchCiba: the
 * replica that started it polls PSC under a lease; if it disappears, the next replica asked about
 * the request takes the lease over and goes on polling. The session token of an approved request is
 * a single-use record: handed out once, whichever replica is asked.
 */
import { randomBytes, randomInt } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Traces } from "../trace/traces.ts";
import type { ClientRegistry } from "./clients.ts";
import type { MisuseGuard } from "./misuse.ts";
import { acrSatisfies, type PscGateway } from "./psc-gateway.ts";
import type { Sessions, SessionView } from "./sessions.ts";
import type { AuthStore, Lease } from "./store.ts";

/** State of a CIBA request. */
export type CibaStatus = "PENDING" | "APPROVED" | "DENIED" | "EXPIRED" | "FAILED";

/** What callers see of a CIBA request. */
export interface CibaView {
  authReqId: string;
  status: CibaStatus;
  expiresAt: number;
  intervalSeconds: number;
  bindingMessage: string;
  /** Once APPROVED; its token is handed to the first caller only. */
  session?: SessionView;
  errorMessage?: string;
}

/** Input of StartCiba. */
export interface CibaStartInput {
  nationalId: string;
  bindingMessage?: string;
  channel?: "CARD" | "MOBILE";
  scope?: string;
}

/** Answer of StartCiba. */
export type CibaStartResult =
  | { reused: false; request: CibaView }
  | { reused: true; request: CibaView }
  | { reused: true; session: SessionView };

/** The shared state of a request (session store). */
interface CibaRecord {
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
}

/** A request this replica polls. */
interface Poller {
  rec: CibaRecord;
  lease: Lease;
  timer?: NodeJS.Timeout;
  renew: NodeJS.Timeout;
}

const FINAL_KEEP_MS = 5 * 60_000;
/** The poller's lease; renewed every third of it while the request is pending. */
const POLL_LEASE_MS = 30_000;
/** How often a watcher on another replica than the poller re-reads the state. */
const REMOTE_WATCH_MS = 500;
const NATIONAL_ID = /^(8\d{11}|0\d{9})$/;

/** The CIBA service. */
export interface Ciba {
  start(client: ClientConfig, input: CibaStartInput): Promise<CibaStartResult>;
  get(clientId: string, authReqId: string): Promise<CibaView>;
  /** Streams the current state, then every change, until a final state or `signal`. */
  watch(clientId: string, authReqId: string, signal?: AbortSignal): AsyncGenerator<CibaView>;
  /** Resolves at a final state (or when the request expires). */
  settled(clientId: string, authReqId: string, signal?: AbortSignal): Promise<CibaView>;
  /** Cancels every poller. */
  close(): void;
}

/** Validates a national id: "8" + 11 digits (RPPS) or "0" + ADELI. */
export function validateNationalId(v: string): string {
  if (!NATIONAL_ID.test(v)) {
    throw new EproxyError(
      "INVALID_ARGUMENT",
      "nationalId must be '8' followed by 11 digits (RPPS) or '0' followed by 9 digits (ADELI)",
    );
  }
  return v;
}

/** Creates the CIBA service. */
export function createCiba(deps: {
  config: Readonly<Config>;
  /** The clients (configuration and registry). */
  clients: Pick<ClientRegistry, "get">;
  /** Misuse thresholds (CIBA failures per professional). */
  misuse?: MisuseGuard;
  psc: PscGateway;
  sessions: Sessions;
  /** Where the state of requests is shared between replicas. */
  store: AuthStore;
  log: Logger;
  traces?: Traces;
  now?: () => number;
}): Ciba {
  const { config, clients, psc, sessions, store, log } = deps;
  const traces = deps.traces ?? { record() {} };
  const now = deps.now ?? Date.now;
  const pollers = new Map<string, Poller>();
  const events = new EventEmitter();
  events.setMaxListeners(0);
  let closed = false;

  const isFinal = (s: CibaStatus) => s !== "PENDING";
  const pendingKey = (clientId: string, nationalId: string) => `${clientId}\n${nationalId}`;
  const leaseName = (id: string) => `ciba-poll:${id}`;

  const save = (rec: CibaRecord) =>
    store.putTransient("ciba-request", rec.id, rec, Math.max(1, rec.expiresAt - now()) + FINAL_KEEP_MS);

  async function load(clientId: string, authReqId: string): Promise<CibaRecord> {
    const rec =
      pollers.get(authReqId)?.rec ?? (await store.getTransient<CibaRecord>("ciba-request", authReqId));
    // Another client's request is reported exactly like a missing one.
    if (!rec || rec.clientId !== clientId)
      throw new EproxyError("NOT_FOUND", "unknown or expired CIBA request");
    return rec;
  }

  async function view(rec: CibaRecord, deliverToken: boolean): Promise<CibaView> {
    let session = rec.session;
    if (session && deliverToken && rec.status === "APPROVED") {
      // The token leaves the store once handed out, whichever replica hands it out.
      const token = await store.takeTransient<string>("ciba-token", rec.id);
      if (token) session = { ...session, token };
    }
    return {
      authReqId: rec.id,
      status: rec.status,
      expiresAt: rec.expiresAt,
      intervalSeconds: Math.round(rec.intervalMs / 1000),
      bindingMessage: rec.bindingMessage,
      ...(session ? { session } : {}),
      ...(rec.errorMessage ? { errorMessage: rec.errorMessage } : {}),
    };
  }

  function drop(p: Poller): void {
    clearTimeout(p.timer);
    clearInterval(p.renew);
    pollers.delete(p.rec.id);
  }

  async function finish(p: Poller, status: CibaStatus, errorMessage?: string, token?: string): Promise<void> {
    const r = p.rec;
    drop(p);
    r.status = status;
    if (errorMessage) r.errorMessage = errorMessage;
    traces.record({
      type: status === "APPROVED" ? "CONNECT_SUCCESS" : "CONNECT_FAILURE",
      clientId: r.clientId,
      nationalId: r.nationalId,
      method: "CIBA",
      ...(r.session?.sessionId ? { sessionId: r.session.sessionId } : {}),
      ...(r.session?.psc?.sessionState ? { sessionState: r.session.psc.sessionState } : {}),
      outcome: status,
    });
    if (status !== "APPROVED") void deps.misuse?.cibaFailed(r.nationalId, r.clientId);
    try {
      if (token) await store.putTransient("ciba-token", r.id, token, FINAL_KEEP_MS);
      await save(r);
      await store.deleteTransient("ciba-pending", pendingKey(r.clientId, r.nationalId));
    } catch (err) {
      log.error({ err: (err as Error).message }, "could not store the end of a CIBA request");
    } finally {
      await p.lease.release().catch(() => {});
      events.emit(r.id);
    }
  }

  function schedule(p: Poller, delayMs: number): void {
    if (closed) return;
    const r = p.rec;
    const wait = Math.min(delayMs, Math.max(0, r.expiresAt - now()));
    p.timer = setTimeout(() => {
      pollOnce(p).catch(async (err: unknown) => {
        log.error({ err }, "CIBA poller failed");
        await finish(p, "FAILED", "internal error while waiting for the professional");
      });
    }, wait);
    p.timer.unref();
  }

  /** Polls a request from this replica, under its lease. */
  function own(rec: CibaRecord, lease: Lease, firstDelayMs: number): void {
    const p: Poller = {
      rec,
      lease,
      renew: setInterval(() => {
        void lease.renew().then(
          (held) => {
            if (!held) drop(p);
          },
          () => {},
        );
      }, POLL_LEASE_MS / 3),
    };
    p.renew.unref();
    pollers.set(rec.id, p);
    schedule(p, firstDelayMs);
  }

  /** Takes over a pending request whose poller is gone (its replica stopped). */
  async function adopt(rec: CibaRecord): Promise<void> {
    if (closed || pollers.has(rec.id) || rec.status !== "PENDING" || now() >= rec.expiresAt) return;
    const lease = await store.tryLease(leaseName(rec.id), POLL_LEASE_MS).catch(() => undefined);
    if (!lease) return;
    // Re-read under the lease: the previous poller may have finished in between.
    const fresh = await store.getTransient<CibaRecord>("ciba-request", rec.id);
    if (fresh?.status !== "PENDING" || pollers.has(rec.id)) {
      await lease.release();
      return;
    }
    log.info({ clientId: fresh.clientId }, "CIBA request taken over from another replica");
    own(fresh, lease, 0);
  }

  async function pollOnce(p: Poller): Promise<void> {
    const r = p.rec;
    if (r.status !== "PENDING" || !pollers.has(r.id)) return;
    if (now() >= r.expiresAt) return finish(p, "EXPIRED", "the professional did not answer in time");
    const outcome = await psc.pollCiba(r.clientId, r.pscAuthReqId);
    switch (outcome.kind) {
      case "pending":
        return schedule(p, r.intervalMs);
      case "slow_down":
        // CIBA §11: slow_down adds 5 seconds to the interval for this and every later poll.
        r.intervalMs += 5_000;
        await save(r);
        return schedule(p, r.intervalMs);
      case "unavailable":
        // Never retry-storm an unavailable PSC: wait at least the interval, or what Retry-After says.
        return schedule(p, Math.max(r.intervalMs, outcome.retryAfterMs ?? r.intervalMs * 2));
      case "denied":
        return finish(p, "DENIED", "the professional refused the authentication");
      case "expired":
        return finish(p, "EXPIRED", "the professional did not answer in time");
      case "failed":
        return finish(p, "FAILED", outcome.message);
      case "approved": {
        if (!acrSatisfies(outcome.claims.acr, config.psc.acrValues)) {
          return finish(
            p,
            "FAILED",
            `authentication level ${outcome.claims.acr ?? "none"} is below ${config.psc.acrValues}`,
          );
        }
        const client = clients.get(r.clientId);
        if (!client) return finish(p, "FAILED", "client removed");
        let token: string | undefined;
        try {
          const created = await sessions.create(client, outcome.tokens, outcome.claims);
          token = created.token;
          const { token: _t, ...withoutToken } = created;
          r.session = withoutToken;
        } catch (err) {
          log.warn({ err: (err as Error).message }, "session creation after CIBA approval failed");
          return finish(p, "FAILED", err instanceof EproxyError ? err.message : "session creation failed");
        }
        return finish(p, "APPROVED", undefined, token);
      }
    }
  }

  /** Resolves on a local change of the request, after `ms`, or when `signal` aborts. */
  async function changed(id: string, ms: number, signal?: AbortSignal): Promise<void> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), ms);
    const onAbort = () => ac.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await once(events, id, { signal: ac.signal });
    } catch {
      // timeout or caller gone: the loop re-reads the state
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async function startGated(
    client: ClientConfig,
    nationalId: string,
    bindingMessage: string,
    channel: "CARD" | "MOBILE",
    scope: string | undefined,
  ): Promise<CibaStartResult> {
    const live = await sessions.findLive(client.id, nationalId);
    if (live) {
      traces.record({
        type: "CONNECT_REPLAY",
        clientId: client.id,
        nationalId,
        method: "CIBA",
        sessionId: live.id,
        outcome: "SESSION_REUSED",
      });
      return { reused: true, session: await sessions.view(live, { reused: true }) };
    }
    const pendingId = await store.getTransient<string>("ciba-pending", pendingKey(client.id, nationalId));
    if (pendingId) {
      const pending = await load(client.id, pendingId).catch(() => undefined);
      if (pending?.status === "PENDING" && pending.expiresAt > now()) {
        void adopt(pending);
        return { reused: true, request: await view(pending, false) };
      }
    }
    const pendingHere = [...pollers.values()].filter((p) => p.rec.clientId === client.id).length;
    if (pendingHere >= client.maxPendingCiba) {
      throw new EproxyError(
        "TOO_MANY_REQUESTS",
        `too many pending CIBA requests for this client (max ${client.maxPendingCiba})`,
      );
    }
    await deps.misuse?.beforeCiba(nationalId);

    const started = await psc
      .startCiba(client.id, {
        loginHint: nationalId,
        bindingMessage,
        channel,
        scope: scope || config.psc.scope,
        acrValues: config.psc.acrValues,
      })
      .catch(async (err: unknown) => {
        // PSC refusing the request (unknown professional, ...) counts; PSC being down does not.
        if (!(err instanceof EproxyError && err.code === "PSC_UNAVAILABLE")) {
          await deps.misuse?.cibaFailed(nationalId, client.id);
        }
        throw err;
      });
    const rec: CibaRecord = {
      id: randomBytes(18).toString("base64url"),
      clientId: client.id,
      nationalId,
      bindingMessage,
      pscAuthReqId: started.authReqId,
      status: "PENDING",
      expiresAt: now() + started.expiresInSeconds * 1000,
      // CIBA §7.3: 5 seconds when PSC gives no interval.
      intervalMs: (started.intervalSeconds ?? 5) * 1000,
    };
    const lease = await store.tryLease(leaseName(rec.id), POLL_LEASE_MS);
    if (!lease) throw new EproxyError("INTERNAL", "could not take the lease of a new CIBA request");
    await save(rec);
    await store.putTransient(
      "ciba-pending",
      pendingKey(client.id, nationalId),
      rec.id,
      Math.max(1, rec.expiresAt - now()),
    );
    own(rec, lease, rec.intervalMs);
    return { reused: false, request: await view(rec, false) };
  }

  return {
    async start(client, input) {
      const nationalId = validateNationalId(input.nationalId ?? "");
      let bindingMessage = input.bindingMessage ?? "";
      if (bindingMessage === "") bindingMessage = String(randomInt(0, 100)).padStart(2, "0");
      if (!/^\d{2}$/.test(bindingMessage))
        throw new EproxyError("INVALID_ARGUMENT", "bindingMessage must be two digits");
      const channel = input.channel ?? "MOBILE";

      // No duplicate pushes: a live session or a pending request for the same professional is reused.
      // The check and the push are one step per (client, professional), across replicas.
      const gateName = `ciba-start:${pendingKey(client.id, nationalId)}`;
      const gateMs = config.psc.timeoutMs + 5_000;
      const deadline = now() + gateMs;
      let gate = await store.tryLease(gateName, gateMs);
      while (!gate) {
        if (now() >= deadline) {
          throw new EproxyError(
            "UNAVAILABLE",
            "a sign-in of this professional is already being started; try again",
          );
        }
        await sleep(50);
        gate = await store.tryLease(gateName, gateMs);
      }
      try {
        return await startGated(client, nationalId, bindingMessage, channel, input.scope);
      } finally {
        await gate.release().catch(() => {});
      }
    },

    async get(clientId, authReqId) {
      const rec = await load(clientId, authReqId);
      if (!pollers.has(rec.id)) void adopt(rec);
      return view(rec, true);
    },

    async *watch(clientId, authReqId, signal) {
      let rec = await load(clientId, authReqId);
      let last: CibaStatus | undefined;
      let adoptedAt = 0;
      while (!signal?.aborted) {
        if (rec.status !== last) {
          last = rec.status;
          yield await view(rec, true);
          if (isFinal(rec.status)) return;
        }
        if (!pollers.has(rec.id) && now() - adoptedAt > POLL_LEASE_MS / 6) {
          adoptedAt = now();
          await adopt(rec);
        }
        await changed(rec.id, pollers.has(rec.id) ? POLL_LEASE_MS : REMOTE_WATCH_MS, signal);
        if (closed) return;
        rec = await load(clientId, authReqId).catch(
          (): CibaRecord => ({ ...rec, status: "EXPIRED", errorMessage: "the request expired" }),
        );
      }
    },

    async settled(clientId, authReqId, signal) {
      let lastView: CibaView | undefined;
      for await (const v of this.watch(clientId, authReqId, signal)) lastView = v;
      if (!lastView || !isFinal(lastView.status))
        throw new EproxyError("UNAVAILABLE", "the request was cancelled");
      return lastView;
    },

    close() {
      closed = true;
      for (const p of [...pollers.values()]) {
        drop(p);
        // Another replica takes over at once instead of waiting for the lease to expire.
        void p.lease.release().catch(() => {});
      }
      events.removeAllListeners();
    },
  };
}
