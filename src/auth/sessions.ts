/**
 * Sessions: creation from PSC tokens, resolution from the backend's bearer, idle and absolute
 * expiry, single-flight refresh of the PSC access token, logout.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Traces } from "../trace/traces.ts";
import type { ClientRegistry } from "./clients.ts";
import type { IdClaims, PscGateway, PscTokens } from "./psc-gateway.ts";
import { underLease } from "./single-flight.ts";
import type { AuthStore, Professional, SessionRecord } from "./store.ts";

/** Prefix of session tokens, so that a bearer is recognisable (and never confused with an API key). */
export const SESSION_TOKEN_PREFIX = "eps_";

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
}

/** SHA-256 (hex) of a bearer: the only form in which tokens are used as store keys. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
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
}): Sessions {
  const { config, clients, store, psc, log } = deps;
  const traces = deps.traces ?? { record() {} };
  const now = deps.now ?? Date.now;
  const idleMs = config.sessions.idleSeconds * 1000;
  const marginMs = config.sessions.refreshBeforeExpirySeconds * 1000;
  const inflight = new Map<string, Promise<SessionRecord>>();

  const clientOf = (id: string) => clients.get(id);

  async function resolve(token: string | undefined, clientId: string): Promise<SessionRecord> {
    if (!token?.startsWith(SESSION_TOKEN_PREFIX))
      throw new EproxyError("SESSION_INVALID", "missing or malformed session token");
    const id = hashToken(token);
    const rec = await store.getSession(id);
    // Another client's session is reported exactly like a missing one.
    if (!rec || rec.clientId !== clientId)
      throw new EproxyError("SESSION_INVALID", "unknown or expired session");
    if (rec.absoluteExpiresAt <= now()) {
      await store.deleteSession(id);
      throw new EproxyError("SESSION_INVALID", "session reached its maximum lifetime");
    }
    await store.touchSession(id, idleMs);
    return rec;
  }

  async function refresh(rec: SessionRecord): Promise<SessionRecord> {
    if (!rec.psc.refreshToken) {
      await store.deleteSession(rec.id);
      throw new EproxyError(
        "REAUTHENTICATION_REQUIRED",
        "the PSC access token expired and cannot be refreshed",
      );
    }
    let tokens: PscTokens;
    const who = { clientId: rec.clientId, nationalId: rec.professional.nationalId, sessionId: rec.id };
    try {
      tokens = await psc.refresh(rec.clientId, rec.psc.refreshToken);
      traces.record({ type: "REFRESH", ...who, outcome: "OK" });
    } catch (err) {
      traces.record({
        type: "REFRESH_FAILURE",
        ...who,
        outcome: err instanceof EproxyError ? err.code : "INTERNAL",
      });
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
        ...tokens,
        refreshToken: tokens.refreshToken ?? rec.psc.refreshToken,
        idToken: tokens.idToken ?? rec.psc.idToken,
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
      const token = `${SESSION_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
      const t = now();
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
      // One live session per client and professional: a new authentication replaces the old one.
      const previous = await store.findSessionId(client.id, rec.professional.nationalId);
      if (previous) await store.deleteSession(previous);
      await store.putSession(rec, idleMs);
      return this.view(rec, { token });
    },

    resolve,

    async fresh(token, clientId) {
      return this.freshRecord(await resolve(token, clientId));
    },

    async freshRecord(rec) {
      const isFresh = (r: SessionRecord) => r.psc.accessExpiresAt - now() > marginMs;
      if (isFresh(rec)) return rec;
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
        inflight.set(rec.id, p);
      }
      return p;
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
      };
    },

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
