/**
 * CIBA requests: validation, reuse (no duplicate push), one background poller per request that
 * honours PSC's interval, slow_down, Retry-After and expiry, and state changes pushed to watchers.
 */
import { randomBytes, randomInt } from "node:crypto";
import { EventEmitter, on } from "node:events";
import type { Logger } from "pino";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Traces } from "../trace/traces.ts";
import type { ClientRegistry } from "./clients.ts";
import type { MisuseGuard } from "./misuse.ts";
import { acrSatisfies, type PscGateway } from "./psc-gateway.ts";
import type { Sessions, SessionView } from "./sessions.ts";

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

interface CibaRequest {
  id: string;
  clientId: string;
  nationalId: string;
  bindingMessage: string;
  pscAuthReqId: string;
  status: CibaStatus;
  expiresAt: number;
  intervalMs: number;
  timer?: NodeJS.Timeout;
  session?: SessionView;
  tokenDelivered: boolean;
  errorMessage?: string;
}

const FINAL_KEEP_MS = 5 * 60_000;
const NATIONAL_ID = /^(8\d{11}|0\d{9})$/;

/** The CIBA service. */
export interface Ciba {
  start(client: ClientConfig, input: CibaStartInput): Promise<CibaStartResult>;
  get(clientId: string, authReqId: string): CibaView;
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
  log: Logger;
  traces?: Traces;
  now?: () => number;
}): Ciba {
  const { config, clients, psc, sessions, log } = deps;
  const traces = deps.traces ?? { record() {} };
  const now = deps.now ?? Date.now;
  const requests = new Map<string, CibaRequest>();
  const events = new EventEmitter();
  events.setMaxListeners(0);
  let closed = false;

  const isFinal = (s: CibaStatus) => s !== "PENDING";

  function view(r: CibaRequest, deliverToken: boolean): CibaView {
    let session = r.session;
    if (session?.token) {
      if (deliverToken && !r.tokenDelivered) {
        r.tokenDelivered = true;
        // The token leaves memory once handed out.
        r.session = { ...session, token: undefined } as SessionView;
        delete r.session.token;
      } else {
        session = { ...session };
        delete session.token;
      }
    }
    return {
      authReqId: r.id,
      status: r.status,
      expiresAt: r.expiresAt,
      intervalSeconds: Math.round(r.intervalMs / 1000),
      bindingMessage: r.bindingMessage,
      ...(session ? { session } : {}),
      ...(r.errorMessage ? { errorMessage: r.errorMessage } : {}),
    };
  }

  function finish(r: CibaRequest, status: CibaStatus, errorMessage?: string): void {
    clearTimeout(r.timer);
    r.status = status;
    traces.record({
      type: status === "APPROVED" ? "CONNECT_SUCCESS" : "CONNECT_FAILURE",
      clientId: r.clientId,
      nationalId: r.nationalId,
      method: "CIBA",
      ...(r.session?.sessionId ? { sessionId: r.session.sessionId } : {}),
      ...(r.session?.psc?.sessionState ? { sessionState: r.session.psc.sessionState } : {}),
      outcome: status,
    });
    if (errorMessage) r.errorMessage = errorMessage;
    if (status !== "APPROVED") void deps.misuse?.cibaFailed(r.nationalId, r.clientId);
    events.emit(r.id);
    setTimeout(() => requests.delete(r.id), FINAL_KEEP_MS).unref();
  }

  function schedule(r: CibaRequest, delayMs: number): void {
    if (closed) return;
    const wait = Math.min(delayMs, Math.max(0, r.expiresAt - now()));
    r.timer = setTimeout(() => {
      pollOnce(r).catch((err: unknown) => {
        log.error({ err }, "CIBA poller failed");
        finish(r, "FAILED", "internal error while waiting for the professional");
      });
    }, wait);
    r.timer.unref();
  }

  async function pollOnce(r: CibaRequest): Promise<void> {
    if (r.status !== "PENDING") return;
    if (now() >= r.expiresAt) return finish(r, "EXPIRED", "the professional did not answer in time");
    const outcome = await psc.pollCiba(r.clientId, r.pscAuthReqId);
    switch (outcome.kind) {
      case "pending":
        return schedule(r, r.intervalMs);
      case "slow_down":
        // CIBA §11: slow_down adds 5 seconds to the interval for this and every later poll.
        r.intervalMs += 5_000;
        return schedule(r, r.intervalMs);
      case "unavailable":
        // Never retry-storm an unavailable PSC: wait at least the interval, or what Retry-After says.
        return schedule(r, Math.max(r.intervalMs, outcome.retryAfterMs ?? r.intervalMs * 2));
      case "denied":
        return finish(r, "DENIED", "the professional refused the authentication");
      case "expired":
        return finish(r, "EXPIRED", "the professional did not answer in time");
      case "failed":
        return finish(r, "FAILED", outcome.message);
      case "approved": {
        if (!acrSatisfies(outcome.claims.acr, config.psc.acrValues)) {
          return finish(
            r,
            "FAILED",
            `authentication level ${outcome.claims.acr ?? "none"} is below ${config.psc.acrValues}`,
          );
        }
        const client = clients.get(r.clientId);
        if (!client) return finish(r, "FAILED", "client removed");
        try {
          r.session = await sessions.create(client, outcome.tokens, outcome.claims);
        } catch (err) {
          log.warn({ err: (err as Error).message }, "session creation after CIBA approval failed");
          return finish(r, "FAILED", err instanceof EproxyError ? err.message : "session creation failed");
        }
        return finish(r, "APPROVED");
      }
    }
  }

  function find(clientId: string, authReqId: string): CibaRequest {
    const r = requests.get(authReqId);
    // Another client's request is reported exactly like a missing one.
    if (!r || r.clientId !== clientId) throw new EproxyError("NOT_FOUND", "unknown or expired CIBA request");
    return r;
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
      for (const r of requests.values()) {
        if (r.clientId === client.id && r.nationalId === nationalId && r.status === "PENDING") {
          return { reused: true, request: view(r, false) };
        }
      }
      const pendingForClient = [...requests.values()].filter(
        (r) => r.clientId === client.id && r.status === "PENDING",
      ).length;
      if (pendingForClient >= client.maxPendingCiba) {
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
          scope: input.scope || config.psc.scope,
          acrValues: config.psc.acrValues,
        })
        .catch(async (err: unknown) => {
          // PSC refusing the request (unknown professional, ...) counts; PSC being down does not.
          if (!(err instanceof EproxyError && err.code === "PSC_UNAVAILABLE")) {
            await deps.misuse?.cibaFailed(nationalId, client.id);
          }
          throw err;
        });
      const r: CibaRequest = {
        id: randomBytes(18).toString("base64url"),
        clientId: client.id,
        nationalId,
        bindingMessage,
        pscAuthReqId: started.authReqId,
        status: "PENDING",
        expiresAt: now() + started.expiresInSeconds * 1000,
        // CIBA §7.3: 5 seconds when PSC gives no interval.
        intervalMs: (started.intervalSeconds ?? 5) * 1000,
        tokenDelivered: false,
      };
      requests.set(r.id, r);
      schedule(r, r.intervalMs);
      return { reused: false, request: view(r, false) };
    },

    get(clientId, authReqId) {
      const r = find(clientId, authReqId);
      return view(r, true);
    },

    async *watch(clientId, authReqId, signal) {
      const r = find(clientId, authReqId);
      let last: CibaStatus | undefined;
      const it = on(events, r.id, signal ? { signal } : {});
      try {
        while (true) {
          if (r.status !== last) {
            last = r.status;
            yield view(r, true);
            if (isFinal(r.status)) return;
          }
          await it.next();
        }
      } catch (err) {
        if ((err as Error).name === "AbortError") return;
        throw err;
      } finally {
        await it.return?.();
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
      for (const r of requests.values()) clearTimeout(r.timer);
      events.removeAllListeners();
    },
  };
}
