/**
 * CIBA requests: validation, reuse (no duplicate push), the background poll of each request, and
 * state changes streamed to watchers.
 *
 * The state of a request lives in the session store, so any replica answers PollCiba/WatchCiba: the
 * replica that started it polls PSC under a lease (`ciba-poller.ts` running `ciba-machine.ts`); when
 * that replica stops, it hands the request over, and another one takes the lease and goes on
 * polling — also when asked about a request whose poller died without handing it over. Watchers
 * are woken by store notifications. The session token of an approved request is a single-use
 * record: handed out once, whichever replica is asked.
 */
import { randomBytes, randomInt } from "node:crypto";
import type { Logger } from "pino";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Traces } from "../trace/traces.ts";
import type { CibaRecord, CibaStatus } from "./ciba-machine.ts";
import { createCibaPoller, POLL_LEASE_MS } from "./ciba-poller.ts";
import {
  type CibaClock,
  createCibaStore,
  createWaker,
  retryWhileStoreDown,
  systemClock,
  type Waker,
} from "./ciba-store.ts";
import type { ClientRegistry } from "./clients.ts";
import type { MisuseGuard } from "./misuse.ts";
import type { PscGateway } from "./psc-gateway.ts";
import type { Sessions, SessionView } from "./sessions.ts";
import type { AuthStore } from "./store.ts";

export type { CibaStatus } from "./ciba-machine.ts";

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
  /** Do not reuse a live session: push again and create a new one beside it (the pending request is still reused). */
  newSession?: boolean;
}

/** Answer of StartCiba. */
export type CibaStartResult =
  | { reused: false; request: CibaView }
  | { reused: true; request: CibaView }
  | { reused: true; session: SessionView };

/**
 * How long a watcher waits without a notification before it looks again: a notification lost
 * while the store was unreachable, or a poller that died without handing over (its lease expires).
 */
const WATCH_RECHECK_MS = POLL_LEASE_MS / 3;
/** First wait before a watcher reads a request again after the store failed (doubling up to the re-check). */
const WATCH_RETRY_MIN_MS = 500;
const NATIONAL_ID = /^(8\d{11}|0\d{9})$/;

/** The CIBA service. */
export interface Ciba {
  start(client: ClientConfig, input: CibaStartInput): Promise<CibaStartResult>;
  get(clientId: string, authReqId: string): Promise<CibaView>;
  /**
   * Streams the current state, then every change, until a final state or `signal`. Ends with
   * UNAVAILABLE when this replica drains (the caller watches again, on another replica).
   */
  watch(clientId: string, authReqId: string, signal?: AbortSignal): AsyncGenerator<CibaView>;
  /** Resolves at a final state (or when the request expires). */
  settled(clientId: string, authReqId: string, signal?: AbortSignal): Promise<CibaView>;
  /** CIBA requests this process is polling (for the pending-requests gauge). */
  pending(): number;
  /**
   * Graceful drain: hands every polled request over to the other replicas (they take over at
   * once) and ends the watchers with UNAVAILABLE. Idempotent; resolves when nothing is polled here.
   */
  drain(): Promise<void>;
  /** Drains, then stops listening to the store. */
  close(): Promise<void>;
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

const isFinal = (s: CibaStatus) => s !== "PENDING";
const shuttingDown = () =>
  new EproxyError("UNAVAILABLE", "eProxy is shutting down; ask again (another replica answers)", {
    retryAfterSeconds: 1,
  });

/** Creates the CIBA service. */
export function createCiba(deps: {
  config: Readonly<Config>;
  /** The clients (configuration and registry). */
  clients: Pick<ClientRegistry, "get">;
  /** Misuse thresholds (CIBA failures per professional). */
  misuse?: MisuseGuard;
  psc: Pick<PscGateway, "startCiba" | "pollCiba">;
  sessions: Pick<Sessions, "create" | "findLive" | "view">;
  /** Where the state of requests is shared between replicas. */
  store: AuthStore;
  log: Logger;
  traces?: Pick<Traces, "record">;
  /** Time and timers (tests inject fake ones). */
  clock?: CibaClock;
}): Ciba {
  const { config, clients, psc, sessions, log } = deps;
  const traces = deps.traces ?? { record() {} };
  const clock = deps.clock ?? systemClock;
  const store = createCibaStore(deps.store, clock);
  /** Watchers of this replica, woken when it drains. */
  const watchers = new Set<Waker>();
  let draining = false;
  let stopListening: (() => void) | undefined;
  let listenTimer: unknown;

  const poller = createCibaPoller({
    store,
    psc,
    clock,
    log,
    acrValues: config.psc.acrValues,
    async createSession(rec, tokens, claims) {
      const client = clients.get(rec.clientId);
      if (!client) throw new EproxyError("NOT_FOUND", "client removed");
      const { token, ...session } = await sessions.create(client, tokens, claims);
      return { session, token: token as string };
    },
    settled(rec) {
      traces.record({
        type: rec.status === "APPROVED" ? "CONNECT_SUCCESS" : "CONNECT_FAILURE",
        clientId: rec.clientId,
        nationalId: rec.nationalId,
        method: "CIBA",
        ...(rec.session?.sessionId ? { sessionId: rec.session.sessionId } : {}),
        // From the session itself: its `psc` tokens are there only for clients that receive them.
        ...(rec.session?.sessionState ? { sessionState: rec.session.sessionState } : {}),
        outcome: rec.status,
      });
      if (rec.status !== "APPROVED") void deps.misuse?.cibaFailed(rec.nationalId, rec.clientId);
    },
  });

  /** Takes over at once what a stopping replica hands over (retried while the store is down). */
  function listenToHandOvers(): void {
    store
      .onHandOver((id) => void adoptById(id))
      .then(
        (off) => {
          if (draining) off();
          else stopListening = off;
        },
        () => {
          if (!draining) listenTimer = clock.setTimeout(listenToHandOvers, WATCH_RECHECK_MS);
        },
      );
  }
  listenToHandOvers();

  async function load(clientId: string, authReqId: string): Promise<CibaRecord> {
    const rec = poller.get(authReqId) ?? (await store.load(authReqId));
    // Another client's request is reported exactly like a missing one.
    if (!rec || rec.clientId !== clientId)
      throw new EproxyError("NOT_FOUND", "unknown or expired CIBA request");
    return rec;
  }

  /**
   * Reads a watched request again. Gone from the store means expired (records stay readable well
   * past their expiry). A store that cannot be read is no final state: the read is retried, backing
   * off, until the request's own expiry (its poller may approve it meanwhile); past that the failure
   * is surfaced (STORE_UNAVAILABLE), never reported as EXPIRED.
   */
  async function reload(
    clientId: string,
    last: CibaRecord,
    waker: Waker,
    signal: AbortSignal | undefined,
  ): Promise<CibaRecord> {
    for (let delay = WATCH_RETRY_MIN_MS; ; delay = Math.min(delay * 2, WATCH_RECHECK_MS)) {
      try {
        return await load(clientId, last.id);
      } catch (err) {
        if (err instanceof EproxyError && err.code === "NOT_FOUND") {
          return { ...last, status: "EXPIRED", errorMessage: "the request expired" };
        }
        // The watcher left: the loop ends on its signal.
        if (signal?.aborted) return last;
        if (draining) throw shuttingDown();
        if (clock.now() >= last.expiresAt + WATCH_RECHECK_MS) {
          throw err instanceof EproxyError
            ? err
            : new EproxyError("STORE_UNAVAILABLE", "session store unavailable", { cause: err });
        }
        log.warn(
          { code: (err as { code?: unknown }).code },
          "CIBA watch could not read the request; retrying",
        );
        // A notification (the store is back and the request changed) ends the wait early.
        await waker.wait(delay, signal);
        if (draining) throw shuttingDown();
      }
    }
  }

  async function view(rec: CibaRecord, deliverToken: boolean): Promise<CibaView> {
    let session = rec.session;
    if (session && deliverToken && rec.status === "APPROVED") {
      // The token leaves the store once handed out, whichever replica hands it out.
      const token = await store.takeToken(rec.id);
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

  /**
   * Polls a pending request from here if no replica holds its lease (its poller stopped). Also
   * past its expiry: the machine then records it EXPIRED at once.
   */
  async function adopt(rec: CibaRecord): Promise<void> {
    if (draining || poller.get(rec.id) || rec.status !== "PENDING") return;
    const lease = await store.tryPollLease(rec.id, POLL_LEASE_MS).catch(() => undefined);
    if (!lease) return;
    // Re-read under the lease: the previous poller may have finished in between.
    const fresh = await store.load(rec.id).catch(() => undefined);
    if (fresh?.status !== "PENDING" || poller.get(rec.id) || draining) {
      await lease.release().catch(() => {});
      return;
    }
    log.info({ clientId: fresh.clientId }, "CIBA request taken over from another replica");
    // The previous poller's pace is kept when it said when the next poll is due.
    poller.own(fresh, lease, Math.max(0, (fresh.nextPollAt ?? 0) - clock.now()));
  }

  async function adoptById(id: string): Promise<void> {
    const rec = await store.load(id).catch(() => undefined);
    if (rec) await adopt(rec);
  }

  async function startGated(
    client: ClientConfig,
    nationalId: string,
    bindingMessage: string,
    channel: "CARD" | "MOBILE",
    scope: string | undefined,
    newSession: boolean,
  ): Promise<CibaStartResult> {
    const live = newSession ? undefined : await sessions.findLive(client.id, nationalId);
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
    const pendingId = await store.pendingId(client.id, nationalId);
    if (pendingId) {
      const pending = await load(client.id, pendingId).catch(() => undefined);
      if (pending?.status === "PENDING" && pending.expiresAt > clock.now()) {
        void adopt(pending);
        return { reused: true, request: await view(pending, false) };
      }
    }
    if (poller.countFor(client.id) >= client.maxPendingCiba) {
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
      expiresAt: clock.now() + started.expiresInSeconds * 1000,
      // CIBA §7.3: 5 seconds when PSC gives no interval.
      intervalMs: (started.intervalSeconds ?? 5) * 1000,
    };
    // PSC has pushed: from here a failure would make the caller's retry push again. The writes are
    // retried through a store failover; without the lease the request is still saved, and the
    // replica a watcher or a poll reaches takes it over once nobody holds its lease.
    const lease = await retryWhileStoreDown(clock, () => store.tryPollLease(rec.id, POLL_LEASE_MS)).catch(
      () => undefined,
    );
    await retryWhileStoreDown(clock, () => store.save(rec));
    await retryWhileStoreDown(clock, () => store.setPending(rec));
    if (lease) poller.own(rec, lease, rec.intervalMs);
    else
      log.warn(
        { clientId: client.id },
        "CIBA request saved without its poll lease: taken over when asked about",
      );
    return { reused: false, request: await view(rec, false) };
  }

  let drained: Promise<void> | undefined;

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
      const gateMs = config.psc.timeoutMs + 5_000;
      const gate = await store.acquireGate(client.id, nationalId, gateMs, gateMs);
      if (!gate) {
        throw new EproxyError(
          "UNAVAILABLE",
          "a sign-in of this professional is already being started; try again",
        );
      }
      try {
        return await startGated(
          client,
          nationalId,
          bindingMessage,
          channel,
          input.scope,
          input.newSession === true,
        );
      } finally {
        await gate.release().catch(() => {});
      }
    },

    async get(clientId, authReqId) {
      const rec = await load(clientId, authReqId);
      void adopt(rec);
      return view(rec, true);
    },

    async *watch(clientId, authReqId, signal) {
      if (draining) throw shuttingDown();
      const waker = createWaker(clock);
      // Listening before the first read: no change between the two is missed.
      const off = await store.onChange(authReqId, () => waker.wake());
      watchers.add(waker);
      try {
        let rec = await load(clientId, authReqId);
        let last: CibaStatus | undefined;
        while (!signal?.aborted) {
          if (rec.status !== last) {
            last = rec.status;
            yield await view(rec, true);
            if (isFinal(rec.status)) return;
          }
          if (draining) throw shuttingDown();
          await adopt(rec);
          // Changes made here notify through the store too (pub/sub); the timeout bounds how late a
          // watcher learns of one whose notification was lost during a Redis reconnect.
          await waker.wait(WATCH_RECHECK_MS, signal);
          if (draining) throw shuttingDown();
          rec = await reload(clientId, rec, waker, signal);
        }
      } finally {
        watchers.delete(waker);
        off();
      }
    },

    async settled(clientId, authReqId, signal) {
      let lastView: CibaView | undefined;
      for await (const v of this.watch(clientId, authReqId, signal)) lastView = v;
      if (!lastView || !isFinal(lastView.status))
        throw new EproxyError("UNAVAILABLE", "the request was cancelled");
      return lastView;
    },

    pending: () => poller.size(),

    drain() {
      drained ??= (async () => {
        draining = true;
        stopListening?.();
        clock.clearTimeout(listenTimer);
        // Hand over first, so that watchers told to go elsewhere find a replica polling.
        await poller.drain();
        for (const w of watchers) w.wake();
      })();
      return drained;
    },

    async close() {
      await this.drain();
    },
  };
}
