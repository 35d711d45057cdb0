/**
 * Sessions: creation from PSC tokens, resolution from the backend's bearer (MAC-checked before any
 * store read), idle and absolute expiry, single-flight refresh of the PSC access token that
 * survives PSC outages while the token still has life, logout.
 *
 * Policy: a professional may hold several sessions with one client (one per login); a new login
 * never ends another session, only an explicit disconnect or expiry does.
 */
import { hash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Metrics } from "../observe/telemetry.ts";
import { sessionHashOf, type Traces } from "../trace/traces.ts";
import type { ClientRegistry } from "./clients.ts";
import { createReportedPeerGuard, type PeerGuard, PeerOpenError } from "./peer-guard.ts";
import type { IdClaims, PscGateway, PscTokens } from "./psc-gateway.ts";
import {
  createSessionTokens,
  SESSION_TOKEN_PREFIX,
  type SessionTokenKeys,
  type VerifiedToken,
} from "./session-tokens.ts";
import { preferRenewed, underLease } from "./single-flight.ts";
import type { AuthStore, Professional, SessionRecord, WindowCount } from "./store.ts";

export { SESSION_TOKEN_PREFIX };

/**
 * A fixed window opened when the store's content began (the first login or the first lookup after
 * a flush): its start tells sessions issued before a store loss from sessions that ended.
 */
const STORE_EPOCH = "session-store-epoch";
const EPOCH_WINDOW_MS = 10 * 365 * 86_400_000;
/** Below this remaining life a PSC access token is not used any more, even during an outage. */
const MIN_USABLE_MS = 2_000;
/** How long a relay waits for an early refresh before going on with the still-valid token. */
const SOFT_REFRESH_WAIT_MS = 1_500;

/** True for failures that mean PSC is down (not a refusal of this session). */
export function isPscOutage(err: unknown): boolean {
  return err instanceof EproxyError && err.code === "PSC_UNAVAILABLE";
}

/** What callers see of a session. Times are milliseconds since the epoch. */
export interface SessionView {
  /** The bearer, only when it is handed out (creation). */
  token?: string;
  /** Store id (hash of the token), for traces; never sent to callers. */
  sessionId: string;
  clientId: string;
  professional: Professional;
  acr: string;
  expiresAt: number;
  idleExpiresAt: number;
  reused: boolean;
  /** Raw PSC tokens, only for clients with `exposePscTokens`. */
  psc?: PscTokens;
  /** Public identifier of the session (its traces' `sessionHash`): `proxy_session_id`. */
  proxySessionId: string;
  /** PSC `session_state`, when PSC gave one (opaque, not a credential). */
  sessionState?: string;
}

/** SHA-256 (hex) of a bearer: the only form in which tokens are used as store keys. */
export function hashToken(token: string): string {
  return hash("sha256", token, "hex");
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** Maps PSC userinfo claims to the professional's identity. */
export function toProfessional(userinfo: Record<string, unknown>, sub: string): Professional {
  const ref = (userinfo.SubjectRefPro ?? {}) as { exercices?: Array<Record<string, unknown>> };
  return {
    nationalId: str(userinfo.SubjectNameID) || str(userinfo.preferred_username) || sub,
    givenName: str(userinfo.given_name),
    familyName: str(userinfo.family_name),
    exercises: (ref.exercices ?? []).map((e) => ({
      professionCode: str(e.codeProfession),
      categoryCode: str(e.codeCategorieProfessionnelle),
      savoirFaireCode: str(e.codeSavoirFaire),
      activities: ((e.activities ?? []) as Array<Record<string, unknown>>).map((a) => ({
        structureId:
          str(a.numeroFinessSite) || str(a.numeroSiretSite) || str(a.identifiantTechniqueDeLaStructure),
        sectorCode: str(a.codeSecteurDactivite),
        structureName: str(a.raisonSocialeSite),
      })),
    })),
    authMode: str(userinfo.authMode),
  };
}

/** The session service. */
export interface Sessions {
  /** Creates a session after a successful PSC authentication; returns it with its token. */
  create(client: ClientConfig, tokens: PscTokens, claims: IdClaims): Promise<SessionView>;
  /** Resolves a bearer for `clientId` (and pushes back its idle expiry). */
  resolve(token: string | undefined, clientId: string): Promise<SessionRecord>;
  /** Returns the session with a PSC access token valid for at least the refresh margin. */
  fresh(token: string | undefined, clientId: string): Promise<SessionRecord>;
  /**
   * `fresh` for a relayed call: with `windowMs` (the misuse guard's `relayWindowMs`), the call is
   * also counted in the session's window, in the same store operation as the lookup; the count
   * goes to `MisuseGuard.relayed`. The count is taken at the lookup, so a call refused afterwards
   * (session of another client, failed PSC refresh) counts too.
   */
  freshCounted(
    token: string | undefined,
    clientId: string,
    windowMs: number | undefined,
  ): Promise<{ rec: SessionRecord; uses?: WindowCount }>;
  /** Same as `fresh`, for a record already resolved. */
  freshRecord(rec: SessionRecord): Promise<SessionRecord>;
  /** The live session of a client for a professional. */
  findLive(clientId: string, nationalId: string): Promise<SessionRecord | undefined>;
  /** The caller's view of a stored session. */
  view(rec: SessionRecord, extra?: { token?: string; reused?: boolean }): Promise<SessionView>;
  /** Ends a session at eProxy and at PSC; true when PSC acknowledged the end-session call. */
  logout(token: string | undefined, clientId: string): Promise<boolean>;
  /**
   * Writes a change to a session with compare-and-set, re-reading and re-applying `change` when
   * another writer got there first; returns the stored version.
   */
  update(rec: SessionRecord, change: (cur: SessionRecord) => SessionRecord): Promise<SessionRecord>;
  /** True while refreshes are paused because PSC's token endpoint is failing (breaker open). */
  pscPaused(): boolean;
}

/** Creates the session service. */
export function createSessions(deps: {
  config: Readonly<Config>;
  /** The clients (configuration and registry). */
  clients: Pick<ClientRegistry, "get">;
  store: AuthStore;
  psc: PscGateway;
  log: Logger;
  traces?: Traces;
  now?: () => number;
  /**
   * MAC keys of session tokens (derived from the store's key ring or the listener's key, so that
   * they survive restarts); a random per-process key when absent (tests).
   */
  tokenKeys?: SessionTokenKeys;
  /** Breaker of PSC's token endpoint (default: one shared through `store`). */
  pscGuard?: PeerGuard;
  /** Where the breaker's state is shown (`eproxy_circuit_breaker_state`). */
  metrics?: Pick<Metrics, "breakerState">;
}): Sessions {
  const { config, clients, store, psc, log } = deps;
  const traces = deps.traces ?? { record() {} };
  const now = deps.now ?? Date.now;
  const idleMs = config.sessions.idleSeconds * 1000;
  const marginMs = config.sessions.refreshBeforeExpirySeconds * 1000;
  const inflight = new Map<string, Promise<SessionRecord>>();
  const bearers = createSessionTokens(
    deps.tokenKeys ?? { activeKeyId: "p", keys: new Map([["p", randomBytes(32)]]) },
  );
  const pscGuard =
    deps.pscGuard ??
    createReportedPeerGuard({
      name: "psc-token",
      store,
      isOutage: isPscOutage,
      now,
      metrics: deps.metrics,
      log,
      failing: "Pro Santé Connect token endpoint failing: refreshes paused, valid access tokens still used",
      recovered: "Pro Santé Connect token endpoint answers again",
    });

  const clientOf = (id: string) => clients.get(id);

  /** Start of the store's current content; opens it when missing (a new or flushed store). */
  async function storeEpoch(): Promise<{ start: number; fresh: boolean }> {
    const w = await store.peek(STORE_EPOCH);
    if (w.count > 0) return { start: w.resetAt - EPOCH_WINDOW_MS, fresh: false };
    const opened = await store.hit(STORE_EPOCH, EPOCH_WINDOW_MS);
    return { start: opened.resetAt - EPOCH_WINDOW_MS, fresh: opened.count === 1 };
  }

  /** Why a verified token has no session: lost with the store's content, or ended. */
  async function missing(issuedAt: number): Promise<EproxyError> {
    if (issuedAt + config.sessions.absoluteSeconds * 1000 <= now())
      return new EproxyError("SESSION_INVALID", "session reached its maximum lifetime");
    const epoch = await storeEpoch();
    // Second precision in the token: a store begun after the token's second lost it.
    if (epoch.start > issuedAt + 999) {
      return new EproxyError(
        "REAUTHENTICATION_REQUIRED",
        "eProxy lost this session (session store incident): authenticate the professional again",
      );
    }
    return new EproxyError("SESSION_INVALID", "unknown or expired session");
  }

  /** Session ids (hashes of tokens) whose MAC verified, bounded: see `resolveCounted`. */
  const verifiedIds = new Map<string, VerifiedToken>();

  async function resolve(token: string | undefined, clientId: string): Promise<SessionRecord> {
    return (await resolveCounted(token, clientId, undefined)).rec;
  }

  /** `resolve`, counting the call in the session's window of `windowMs` when given. */
  async function resolveCounted(
    token: string | undefined,
    clientId: string,
    windowMs: number | undefined,
  ): Promise<{ rec: SessionRecord; uses?: WindowCount }> {
    if (!token || token.length > 200) {
      throw new EproxyError("SESSION_INVALID", "missing or malformed session token");
    }
    const id = hashToken(token);
    // The MAC is checked once per token: later calls find its id (the SHA-256 of the token, not a
    // secret) among the verified ones. Forged or malformed: refused without a store read.
    const verified = verifiedIds.get(id) ?? bearers.verify(token);
    if (!verified) throw new EproxyError("SESSION_INVALID", "missing or malformed session token");
    if (verifiedIds.size >= 10_000) verifiedIds.clear();
    verifiedIds.set(id, verified);
    // One store operation: the read and the idle touch (a touch before the checks below is harmless:
    // only a holder of the token can make it, and an ended session is deleted right after), and
    // the count of a relayed call.
    let rec: SessionRecord | undefined;
    let uses: WindowCount | undefined;
    if (windowMs === undefined) {
      rec = await store.useSession(id, idleMs);
    } else {
      const used = await store.useSessionCounted(id, idleMs, windowMs);
      rec = used?.session;
      uses = used?.uses;
    }
    if (!rec) throw await missing(verified.issuedAt);
    // Another client's session is reported exactly like a missing one.
    if (rec.clientId !== clientId) throw new EproxyError("SESSION_INVALID", "unknown or expired session");
    if (rec.absoluteExpiresAt <= now()) {
      await store.deleteSession(id);
      throw new EproxyError("SESSION_INVALID", "session reached its maximum lifetime");
    }
    return uses ? { rec, uses } : { rec };
  }

  async function refresh(rec: SessionRecord): Promise<SessionRecord> {
    if (!rec.psc.refreshToken) {
      await store.deleteSession(rec.id);
      throw new EproxyError(
        "REAUTHENTICATION_REQUIRED",
        "the PSC access token expired and cannot be refreshed",
      );
    }
    let fresh: PscTokens;
    const who = { clientId: rec.clientId, nationalId: rec.professional.nationalId, sessionId: rec.id };
    const refreshToken = rec.psc.refreshToken;
    try {
      fresh = await pscGuard.run(() => psc.refresh(rec.clientId, refreshToken));
      traces.record({ type: "REFRESH", ...who, outcome: "OK" });
    } catch (err) {
      if (err instanceof PeerOpenError) {
        throw new EproxyError("PSC_UNAVAILABLE", "Pro Santé Connect unavailable (refresh paused)", {
          cause: err,
          retryAfterSeconds: Math.max(1, Math.ceil(err.retryAfterMs / 1000)),
        });
      }
      // An outage is traced once per window for the whole endpoint, not once per session or call.
      if (!isPscOutage(err) || (await pscGuard.claimFailureTrace().catch(() => true))) {
        traces.record({
          type: "REFRESH_FAILURE",
          ...who,
          outcome: err instanceof EproxyError ? err.code : "INTERNAL",
        });
      }
      if (err instanceof EproxyError && err.code === "REAUTHENTICATION_REQUIRED") {
        await store.deleteSession(rec.id);
        log.info({ clientId: rec.clientId }, "PSC refresh refused: session ended");
      }
      throw err;
    }
    const next: SessionRecord = {
      ...rec,
      psc: {
        ...rec.psc,
        ...fresh,
        refreshToken: fresh.refreshToken ?? rec.psc.refreshToken,
        idToken: fresh.idToken ?? rec.psc.idToken,
      },
      version: rec.version + 1,
    };
    if (!(await store.putSession(next, idleMs))) {
      // A newer version was written meanwhile (another refresh won): use it.
      const cur = await store.getSession(rec.id);
      if (!cur) throw new EproxyError("SESSION_INVALID", "session ended during refresh");
      return cur;
    }
    return next;
  }

  return {
    async create(client, tokens, claims) {
      const userinfo = await psc.userinfo(client.id, tokens.accessToken, claims.sub);
      // The epoch exists before the first token of a store's content is issued.
      await storeEpoch();
      const t = now();
      const token = bearers.issue(t);
      const absolute = t + config.sessions.absoluteSeconds * 1000;
      const rec: SessionRecord = {
        id: hashToken(token),
        clientId: client.id,
        professional: toProfessional(userinfo, claims.sub),
        acr: claims.acr ?? "",
        psc: tokens,
        createdAt: t,
        absoluteExpiresAt: absolute,
        version: 1,
      };
      // Several sessions per client and professional: a new login never ends another one (the
      // index points at the newest, for CIBA's reuse of a live session).
      await store.putSession(rec, idleMs);
      return this.view(rec, { token });
    },

    resolve,

    async fresh(token, clientId) {
      return this.freshRecord(await resolve(token, clientId));
    },

    async freshCounted(token, clientId, windowMs) {
      const { rec, uses } = await resolveCounted(token, clientId, windowMs);
      const fresh = await this.freshRecord(rec);
      return uses ? { rec: fresh, uses } : { rec: fresh };
    },

    async freshRecord(rec) {
      const isFresh = (r: SessionRecord) => r.psc.accessExpiresAt - now() > marginMs;
      if (isFresh(rec)) return rec;
      const usable = rec.psc.accessExpiresAt - now() > MIN_USABLE_MS;
      // PSC is known to be down: a token with life left is used as it is, without a call.
      if (usable && pscGuard.openForMs() > 0) return rec;
      // Single flight: in this process through one shared promise, across replicas through a lease.
      let p = inflight.get(rec.id);
      if (!p) {
        p = underLease(
          store,
          `refresh:${rec.id}`,
          { ttlMs: 5_000, waitMs: 30_000 },
          async () => {
            const cur = await store.getSession(rec.id);
            if (!cur) throw new EproxyError("SESSION_INVALID", "session ended");
            // Fresh, or refreshed by another holder since this caller saw it stale.
            return isFresh(cur) || cur.psc.accessExpiresAt > rec.psc.accessExpiresAt ? cur : undefined;
          },
          async () => refresh((await store.getSession(rec.id)) ?? rec),
        ).finally(() => inflight.delete(rec.id));
        // Callers may stop waiting (below): the outcome is still observed.
        p.catch(() => {});
        inflight.set(rec.id, p);
      }
      if (!usable) return p;
      // The early refresh must not make a relay fail, nor wait long, while the token still works.
      return preferRenewed(
        p,
        rec,
        SOFT_REFRESH_WAIT_MS,
        (err) => isPscOutage(err) || (err instanceof EproxyError && err.code === "UNAVAILABLE"),
      );
    },

    async findLive(clientId, nationalId) {
      const id = await store.findSessionId(clientId, nationalId);
      if (!id) return undefined;
      const rec = await store.getSession(id);
      return rec && rec.absoluteExpiresAt > now() ? rec : undefined;
    },

    async view(rec, extra = {}) {
      const idle = (await store.sessionIdleExpiry(rec.id)) ?? Math.min(now() + idleMs, rec.absoluteExpiresAt);
      const client = clientOf(rec.clientId);
      return {
        ...(extra.token ? { token: extra.token } : {}),
        sessionId: rec.id,
        clientId: rec.clientId,
        professional: rec.professional,
        acr: rec.acr,
        expiresAt: rec.absoluteExpiresAt,
        idleExpiresAt: idle,
        reused: extra.reused ?? false,
        ...(client?.exposePscTokens ? { psc: rec.psc } : {}),
        proxySessionId: sessionHashOf(rec.id),
        ...(rec.psc.sessionState ? { sessionState: rec.psc.sessionState } : {}),
      };
    },

    pscPaused: () => pscGuard.openForMs() > 0,

    async update(rec, change) {
      let cur: SessionRecord | undefined = rec;
      for (let attempt = 0; attempt < 5 && cur; attempt++) {
        const next = { ...change(cur), version: cur.version + 1 };
        if (await store.putSession(next, idleMs)) return next;
        cur = await store.getSession(rec.id);
      }
      if (!cur) throw new EproxyError("SESSION_INVALID", "session ended meanwhile");
      throw new EproxyError("UNAVAILABLE", "session is being updated concurrently; retry");
    },

    async logout(token, clientId) {
      const rec = await resolve(token, clientId);
      await store.deleteSession(rec.id);
      traces.record({
        type: "DISCONNECT",
        clientId,
        nationalId: rec.professional.nationalId,
        sessionId: rec.id,
        ...(rec.psc.sessionState ? { sessionState: rec.psc.sessionState } : {}),
        outcome: "OK",
      });
      // Local state is gone first: a PSC outage must not keep a session alive.
      const [ended] = await Promise.all([
        rec.psc.idToken ? psc.endSession(clientId, rec.psc.idToken) : Promise.resolve(false),
        rec.psc.refreshToken
          ? psc.revoke(clientId, rec.psc.refreshToken, "refresh_token")
          : Promise.resolve(),
      ]);
      return ended;
    },
  };
}
