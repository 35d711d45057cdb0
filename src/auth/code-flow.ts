/**
 * The authorization code flow with PKCE: start (registered redirect URIs only, exact match), PSC's
 * callback (single-use state, code exchange, ID token validation), and the one-time proxy code the
 * backend redeems: the session is created at redemption, so an abandoned login touches nothing.
 */
import { hash, randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { Traces } from "../trace/traces.ts";
import type { ClientRegistry } from "./clients.ts";
import { acrSatisfies, type IdClaims, type PscGateway, type PscTokens } from "./psc-gateway.ts";
import { hashToken, type Sessions, type SessionView } from "./sessions.ts";
import type { AuthStore } from "./store.ts";

const STATE_TTL_MS = 10 * 60_000;
const ONE_TIME_CODE_TTL_MS = 60_000;

interface FlowState {
  clientId: string;
  redirectUri: string;
  nonce: string;
  codeVerifier: string;
}

/**
 * What a one-time code stands for: PSC's tokens, turned into a session only when the backend
 * redeems the code, so that a browser login abandoned after PSC's redirect creates nothing.
 */
interface OneTimeCode {
  clientId: string;
  tokens: PscTokens;
  claims: IdClaims;
}

/** The code-flow service. */
export interface CodeFlow {
  /** Returns PSC's authorization URL for a client and one of its registered redirect URIs. */
  start(
    client: ClientConfig,
    redirectUri: string,
  ): Promise<{ authorizationUrl: string; expiresInSeconds: number }>;
  /**
   * Handles PSC's redirect to eProxy; returns where to send the browser (the backend's redirect URI
   * with `code`, or with `error`). Throws only when no safe redirect target is known.
   */
  callback(clientId: string, callbackUrl: URL): Promise<string>;
  /** Redeems a one-time code for the session, once. */
  redeem(client: ClientConfig, code: string): Promise<SessionView>;
}

const random = () => randomBytes(32).toString("base64url");

/** Creates the code-flow service. */
export function createCodeFlow(deps: {
  config: Readonly<Config>;
  /** The clients (configuration and registry). */
  clients: Pick<ClientRegistry, "get">;
  store: AuthStore;
  psc: PscGateway;
  sessions: Sessions;
  log: Logger;
  traces?: Traces;
}): CodeFlow {
  const { config, clients, store, psc, sessions, log } = deps;
  const traces = deps.traces ?? { record() {} };
  const callbackFor = (clientId: string) =>
    `${config.server.publicBaseUrl}/oauth2/codeflow/${encodeURIComponent(clientId)}/callback`;

  function withParams(target: string, params: Record<string, string>): string {
    const u = new URL(target);
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    return u.toString();
  }

  return {
    async start(client, redirectUri) {
      // Exact match only: anything else would make eProxy an open redirector.
      if (!client.redirectUris.includes(redirectUri)) {
        throw new EproxyError("INVALID_ARGUMENT", "redirectUri is not registered for this client");
      }
      const state = random();
      const nonce = random();
      const codeVerifier = random();
      const codeChallenge = hash("sha256", codeVerifier, "base64url");
      await store.putTransient(
        "codeflow-state",
        hashToken(state),
        { clientId: client.id, redirectUri, nonce, codeVerifier } satisfies FlowState,
        STATE_TTL_MS,
      );
      const authorizationUrl = await psc.authorizationUrl(client.id, {
        redirectUri: callbackFor(client.id),
        state,
        nonce,
        codeChallenge,
        scope: config.psc.scope,
        acrValues: config.psc.acrValues,
      });
      return { authorizationUrl, expiresInSeconds: STATE_TTL_MS / 1000 };
    },

    async callback(clientId, callbackUrl) {
      const state = callbackUrl.searchParams.get("state");
      if (!state) throw new EproxyError("INVALID_ARGUMENT", "missing state");
      const flow = await store.takeTransient<FlowState>("codeflow-state", hashToken(state));
      if (!flow || flow.clientId !== clientId) {
        throw new EproxyError("INVALID_ARGUMENT", "unknown, expired or already used state");
      }
      const pscError = callbackUrl.searchParams.get("error");
      if (pscError) {
        traces.record({
          type: "CONNECT_FAILURE",
          clientId,
          method: "CODE_FLOW",
          outcome: pscError.slice(0, 64),
        });
        const description = callbackUrl.searchParams.get("error_description");
        return withParams(flow.redirectUri, {
          error: /^[\w.-]{1,64}$/.test(pscError) ? pscError : "server_error",
          ...(description ? { error_description: description.slice(0, 200) } : {}),
        });
      }
      const client = clients.get(clientId);
      if (!client) throw new EproxyError("INVALID_ARGUMENT", "unknown client");
      try {
        // The URL PSC redirected to, as registered: public base plus the received query.
        const current = new URL(callbackFor(clientId));
        current.search = callbackUrl.search;
        const { tokens, claims } = await psc.exchangeCode(clientId, {
          callbackUrl: current,
          state,
          nonce: flow.nonce,
          codeVerifier: flow.codeVerifier,
        });
        if (!acrSatisfies(claims.acr, config.psc.acrValues)) {
          return withParams(flow.redirectUri, { error: "insufficient_acr" });
        }
        const code = random();
        await store.putTransient(
          "one-time-code",
          hashToken(code),
          { clientId, tokens, claims } satisfies OneTimeCode,
          ONE_TIME_CODE_TTL_MS,
        );
        return withParams(flow.redirectUri, { code });
      } catch (err) {
        log.warn({ err: (err as Error).message, clientId }, "code flow callback failed");
        traces.record({
          type: "CONNECT_FAILURE",
          clientId,
          method: "CODE_FLOW",
          outcome: err instanceof EproxyError ? err.code : "INTERNAL",
        });
        const error =
          err instanceof EproxyError && err.code === "PSC_UNAVAILABLE"
            ? "temporarily_unavailable"
            : "access_denied";
        return withParams(flow.redirectUri, { error });
      }
    },

    async redeem(client, code) {
      if (!code) throw new EproxyError("INVALID_ARGUMENT", "missing code");
      const entry = await store.takeTransient<OneTimeCode>("one-time-code", hashToken(code));
      if (!entry || entry.clientId !== client.id) {
        throw new EproxyError("INVALID_ARGUMENT", "unknown, expired or already used code");
      }
      const session = await sessions.create(client, entry.tokens, entry.claims);
      traces.record({
        type: "CONNECT_SUCCESS",
        clientId: client.id,
        nationalId: session.professional.nationalId,
        method: "CODE_FLOW",
        sessionId: session.sessionId,
        ...(entry.tokens.sessionState ? { sessionState: entry.tokens.sessionState } : {}),
        outcome: "APPROVED",
      });
      return session;
    },
  };
}
