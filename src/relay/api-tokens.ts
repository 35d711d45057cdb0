/**
 * API tokens for teleservices: obtained by RFC 8693 exchange of a fresh PSC access token, cached in
 * the session per (teleservice, certificate thumbprint), refreshed shortly before expiry, with one
 * exchange in flight per key however many relays need it.
 */
import type { Sessions } from "../auth/sessions.ts";
import { underLease } from "../auth/single-flight.ts";
import type { AuthStore, SessionRecord } from "../auth/store.ts";
import type { TeleserviceConfig } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Traces } from "../trace/traces.ts";
import type { ExchangedToken, TokenExchange } from "./ports.ts";

/** The API-token service. */
export interface ApiTokens {
  /** The bearer to send to `teleservice` for this session, or undefined for mTLS-only services. */
  get(
    rec: SessionRecord,
    teleservice: TeleserviceConfig,
    thumbprint: string,
    signal?: AbortSignal,
  ): Promise<string | undefined>;
}

/** Creates the API-token service. */
export function createApiTokens(deps: {
  sessions: Sessions;
  store: AuthStore;
  tokenExchange: TokenExchange;
  traces?: Traces;
  now?: () => number;
}): ApiTokens {
  const { sessions, tokenExchange, store } = deps;
  const traces = deps.traces ?? { record() {} };
  const now = deps.now ?? Date.now;
  const inflight = new Map<string, Promise<string>>();

  async function exchange(rec: SessionRecord, t: TeleserviceConfig, thumbprint: string): Promise<string> {
    // The subject token must be a live PSC access token: refresh PSC first when it is close to expiry.
    const fresh = await sessions.freshRecord(rec);
    const who = {
      clientId: fresh.clientId,
      nationalId: fresh.professional.nationalId,
      sessionId: fresh.id,
      service: t.name,
    };
    const started = performance.now();
    let answer: ExchangedToken;
    try {
      answer = await tokenExchange.exchange({
        clientId: fresh.clientId,
        teleservice: t,
        subjectToken: fresh.psc.accessToken,
      });
    } catch (err) {
      traces.record({
        type: "EXCHANGE",
        ...who,
        outcome: err instanceof EproxyError ? err.code : "INTERNAL",
      });
      throw err;
    }
    traces.record({
      type: "EXCHANGE",
      ...who,
      durationMs: Math.round(performance.now() - started),
      outcome: "OK",
    });
    const { accessToken, expiresInSeconds } = answer;
    await sessions.update(fresh, (cur) => ({
      ...cur,
      apiTokens: {
        ...cur.apiTokens,
        [t.name]: { token: accessToken, expiresAt: now() + expiresInSeconds * 1000, thumbprint },
      },
    }));
    return accessToken;
  }

  return {
    async get(rec, t, thumbprint) {
      if (!t.tokenExchange) return undefined;
      const margin = t.tokenExchange.refreshBeforeExpirySeconds * 1000;
      const cached = rec.apiTokens?.[t.name];
      if (cached && cached.thumbprint === thumbprint && cached.expiresAt - now() > margin)
        return cached.token;
      const key = `${rec.id}\n${t.name}\n${thumbprint}`;
      let p = inflight.get(key);
      if (!p) {
        const valid = (r: SessionRecord | undefined) => {
          const c = r?.apiTokens?.[t.name];
          return c && c.thumbprint === thumbprint && c.expiresAt - now() > margin ? c.token : undefined;
        };
        // Not tied to the caller's signal: other callers may be waiting for the same exchange.
        p = underLease(
          store,
          `exchange:${key}`,
          { ttlMs: 5_000, waitMs: 30_000 },
          async () => valid(await store.getSession(rec.id)),
          async () => exchange((await store.getSession(rec.id)) ?? rec, t, thumbprint),
        ).finally(() => inflight.delete(key));
        inflight.set(key, p);
      }
      return p;
    },
  };
}
