/**
 * What the authentication domain needs from Pro Santé Connect. The openid-client adapter in
 * `infra/psc-openid.ts` implements it; tests run it against the PSC simulator.
 */

/** PSC tokens of a session. Times are milliseconds since the epoch. */
export interface PscTokens {
  /** Access token (about 2 minutes). */
  accessToken: string;
  /** Refresh token (about 30 minutes), when issued. */
  refreshToken?: string;
  /** ID token, kept for logout's id_token_hint. */
  idToken?: string;
  /** Expiry of the access token. */
  accessExpiresAt: number;
  /** Expiry of the refresh token, when PSC says (`refresh_expires_in`). */
  refreshExpiresAt?: number;
  /** Granted scope. */
  scope?: string;
  /** PSC `session_state`, opaque. */
  sessionState?: string;
}

/** Claims of a validated ID token that eProxy uses. */
export interface IdClaims {
  /** Subject (the national id at PSC). */
  sub: string;
  /** Authentication level reached. */
  acr?: string;
}

/** Outcome of one CIBA poll at PSC. */
export type CibaPollOutcome =
  | { kind: "pending" }
  | { kind: "slow_down" }
  | { kind: "unavailable"; retryAfterMs?: number }
  | { kind: "approved"; tokens: PscTokens; claims: IdClaims }
  | { kind: "denied" }
  | { kind: "expired" }
  | { kind: "failed"; message: string };

/** Parameters of a backchannel authentication request. */
export interface CibaStartParams {
  loginHint: string;
  bindingMessage: string;
  channel: "CARD" | "MOBILE";
  scope: string;
  acrValues: string;
}

/** Pro Santé Connect, as seen by the authentication domain; every call is made as one client. */
export interface PscGateway {
  /** Sends the backchannel authentication request (the push to the professional). */
  startCiba(
    clientId: string,
    p: CibaStartParams,
  ): Promise<{ authReqId: string; expiresInSeconds: number; intervalSeconds?: number }>;
  /** Polls the token endpoint once for a CIBA request. */
  pollCiba(clientId: string, authReqId: string): Promise<CibaPollOutcome>;
  /** Builds the authorization URL of the code flow. */
  authorizationUrl(
    clientId: string,
    p: {
      redirectUri: string;
      state: string;
      nonce: string;
      codeChallenge: string;
      scope: string;
      acrValues: string;
    },
  ): Promise<string>;
  /** Exchanges an authorization code (validates state, iss, ID token signature, nonce, expiry). */
  exchangeCode(
    clientId: string,
    p: { callbackUrl: URL; state: string; nonce: string; codeVerifier: string },
  ): Promise<{ tokens: PscTokens; claims: IdClaims }>;
  /** Refreshes the access token; throws REAUTHENTICATION_REQUIRED on invalid_grant. */
  refresh(clientId: string, refreshToken: string): Promise<PscTokens>;
  /** Fetches userinfo for the access token (must still be valid: 2 minutes). */
  userinfo(clientId: string, accessToken: string, sub: string): Promise<Record<string, unknown>>;
  /** Calls the end-session endpoint with id_token_hint; true when PSC acknowledged. */
  endSession(clientId: string, idToken: string): Promise<boolean>;
  /** Revokes a token; best effort. */
  revoke(clientId: string, token: string, hint: "refresh_token" | "access_token"): Promise<void>;
  /** Resolves when PSC's discovery document can be read. */
  ready(): Promise<void>;
  /** Resolves when PSC answers now (a fresh request, for readiness); rejects otherwise. */
  reachable(): Promise<void>;
  /** Closes connection pools. */
  close(): Promise<void>;
}

/** Authentication levels in increasing strength. */
export const ACR_LEVELS = ["eidas1", "eidas2", "eidas3"] as const;

/** True when `got` is at or above `asked` (PSC may answer eidas2/3 when eidas1 was asked). */
export function acrSatisfies(got: string | undefined, asked: string): boolean {
  const g = ACR_LEVELS.indexOf((got ?? "") as (typeof ACR_LEVELS)[number]);
  const a = ACR_LEVELS.indexOf(asked as (typeof ACR_LEVELS)[number]);
  return g >= 0 && g >= a;
}
