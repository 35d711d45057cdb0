/**
 * API tokens for teleservices: obtained by RFC 8693 exchange of a fresh PSC access token, cached in
 * the session per (teleservice, certificate thumbprint), refreshed shortly before expiry, with one
 * exchange in flight per key however many relays need it. An authorization server (or PSC) outage
 * does not fail a relay whose cached API token is still valid; exchanges go through a breaker per
 * authorization server, shared by replicas, so an outage costs it a bounded number of calls.
 */
import type { Logger } from "pino";
import { createReportedPeerGuard, type PeerGuard, PeerOpenError } from "../auth/peer-guard.ts";
import { isPscOutage, type Sessions } from "../auth/sessions.ts";
import { preferRenewed, underLease } from "../auth/single-flight.ts";
import type { AuthStore, SessionRecord } from "../auth/store.ts";
import type { TeleserviceConfig } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Metrics } from "../observe/telemetry.ts";
import type { Traces } from "../trace/traces.ts";
import type { ExchangedToken, TokenExchange } from "./ports.ts";

/** Below this remaining life an API token is not used any more, even during an outage. */
const MIN_USABLE_MS = 2_000;
/** How long a relay waits for an early renewal before going on with the cached token. */
const SOFT_RENEW_WAIT_MS = 1_500;

/** True for failures that mean the authorization server is down (not a refusal). */
export function isExchangeOutage(err: unknown): boolean {
  return err instanceof EproxyError && err.code === "TOKEN_EXCHANGE_UNAVAILABLE";
}

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
  log?: Pick<Logger, "warn" | "info">;
  /** Where each breaker's state is shown (`eproxy_circuit_breaker_state`). */
  metrics?: Pick<Metrics, "breakerState">;
}): ApiTokens {
  const { sessions, tokenExchange, store } = deps;
  const traces = deps.traces ?? { record() {} };
  const now = deps.now ?? Date.now;
  const inflight = new Map<string, Promise<string>>();
  const guards = new Map<string, PeerGuard>();

  /** The breaker of a teleservice's authorization server. */
  function guardFor(t: TeleserviceConfig): PeerGuard {
    let g = guards.get(t.name);
    if (!g) {
      g = createReportedPeerGuard({
        name: `as:${t.name}`,
        store,
        isOutage: isExchangeOutage,
        now,
        metrics: deps.metrics,
        log: deps.log,
        failing: "authorization server failing: token exchanges paused, cached API tokens still used",
        recovered: "authorization server answers again",
      });
      guards.set(t.name, g);
    }
    return g;
  }

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
    const guard = guardFor(t);
    try {
      answer = await guard.run(() =>
        tokenExchange.exchange({
          clientId: fresh.clientId,
          teleservice: t,
          subjectToken: fresh.psc.accessToken,
        }),
      );
    } catch (err) {
      if (err instanceof PeerOpenError) {
        throw new EproxyError(
          "TOKEN_EXCHANGE_UNAVAILABLE",
          `token exchange unavailable: authorization server of ${t.name} is failing (exchanges paused)`,
          { cause: err, retryAfterSeconds: Math.max(1, Math.ceil(err.retryAfterMs / 1000)) },
        );
      }
      // An outage is traced once per window for the authorization server, not once per relay.
      if (!isExchangeOutage(err) || (await guard.claimFailureTrace().catch(() => true))) {
        traces.record({
          type: "EXCHANGE",
          ...who,
          outcome: err instanceof EproxyError ? err.code : "INTERNAL",
        });
      }
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
      const usable = cached && cached.thumbprint === thumbprint && cached.expiresAt - now() > MIN_USABLE_MS;
      if (usable && cached.expiresAt - now() > margin) return cached.token;
      // The authorization server is known to be down: a token with life left is used as it is.
      if (usable && guardFor(t).openForMs() > 0) return cached.token;
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
        // Callers may stop waiting (below): the outcome is still observed.
        p.catch(() => {});
        inflight.set(key, p);
      }
      if (!usable) return p;
      // An early renewal must not make a relay fail, nor wait long, while the cached token works:
      // the AS or PSC is down, or another replica's renewal is still running.
      return preferRenewed(
        p,
        cached.token,
        SOFT_RENEW_WAIT_MS,
        (err) =>
          isExchangeOutage(err) ||
          isPscOutage(err) ||
          (err instanceof EproxyError && err.code === "UNAVAILABLE"),
      );
    },
  };
}
