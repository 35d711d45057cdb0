/**
 * The PSC gateway on openid-client v6: discovery from PSC's non-standard path with per-endpoint
 * overrides, per-client authentication (tls_client_auth through one undici Agent per client
 * certificate, injected with openid-client's `customFetch`; client_secret_basic/post), ID token
 * signature checks, bounded clock tolerance. Foreign errors are translated here, by their codes.
 */
import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import * as oidc from "openid-client";
import type { Logger } from "pino";
import { Agent, fetch as undiciFetch } from "undici";
import type { ClientIdentity, ClientLookup } from "../auth/clients.ts";
import { PSC_AUTH_METHODS, type PscAuthMethod } from "../auth/psc-client-auth.ts";
import type { CibaPollOutcome, IdClaims, PscGateway, PscTokens } from "../auth/psc-gateway.ts";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import {
  codesOf,
  findCause,
  HttpUnavailable,
  isNonConformingAnswer,
  oauthErrorOf,
  peerRefusedCertificate,
  retryAfterMs,
  transportFailureOf,
} from "./foreign-errors.ts";
import { certificateRefusal } from "./tls-probe.ts";

const CIBA_GRANT = "urn:openid:params:grant-type:ciba";

/** Maps a transport-level failure (refused, reset, TLS, timeout, 5xx) to PSC_UNAVAILABLE. */
function toPscError(err: unknown, what: string, log?: Pick<Logger, "warn">, peer?: string): EproxyError {
  if (err instanceof EproxyError) return err;
  const refused = peerRefusedCertificate(err);
  if (refused) {
    log?.warn(
      { peer, reason: refused },
      "Pro Santé Connect refused eProxy's client certificate in the TLS handshake",
    );
    return new EproxyError(
      "PERMISSION_DENIED",
      `Pro Santé Connect refused this client's certificate (TLS ${refused.toLowerCase()}): check the client's certificate`,
      { cause: err },
    );
  }
  // PSC's Retry-After travels with the error: the refresh breaker waits at least that long.
  const http = findCause(err, (e): e is HttpUnavailable => e instanceof HttpUnavailable);
  return new EproxyError("PSC_UNAVAILABLE", `Pro Santé Connect unavailable (${what})`, {
    cause: err,
    ...(http?.retryAfterMs !== undefined ? { retryAfterSeconds: Math.max(1, http.retryAfterMs / 1000) } : {}),
  });
}

function tokensOf(r: oidc.TokenEndpointResponse, now = Date.now()): PscTokens {
  const extra = r as oidc.TokenEndpointResponse & { refresh_expires_in?: number; session_state?: string };
  return {
    accessToken: r.access_token,
    ...(r.refresh_token ? { refreshToken: r.refresh_token } : {}),
    ...(r.id_token ? { idToken: r.id_token } : {}),
    accessExpiresAt: now + (r.expires_in ?? 120) * 1000,
    ...(typeof extra.refresh_expires_in === "number"
      ? { refreshExpiresAt: now + extra.refresh_expires_in * 1000 }
      : {}),
    ...(r.scope ? { scope: r.scope } : {}),
    ...(typeof extra.session_state === "string" ? { sessionState: extra.session_state } : {}),
  };
}

function claimsOf(r: { claims(): oidc.IDToken | undefined }): IdClaims {
  const c = r.claims();
  if (!c) throw new EproxyError("PSC_UNAVAILABLE", "Pro Santé Connect returned no ID token");
  return { sub: c.sub, ...(typeof c.acr === "string" ? { acr: c.acr } : {}) };
}

/**
 * The key a client signs its private_key_jwt assertions with: `signingKeyFile`, or the private key
 * of its certificate (PEM). RSA keys sign RS256, EC P-256 keys ES256.
 */
async function signingKey(client: ClientConfig, identity: ClientIdentity): Promise<oidc.PrivateKey> {
  const pem = client.signingKeyFile
    ? readFileSync(client.signingKeyFile, "utf8")
    : "key" in identity.tls
      ? identity.tls.key
      : undefined;
  if (!pem) {
    throw new EproxyError("PERMISSION_DENIED", `client ${client.id}: private_key_jwt needs signingKeyFile`);
  }
  const key = createPrivateKey(pem);
  const algorithm =
    key.asymmetricKeyType === "rsa"
      ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }
      : key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1"
        ? { name: "ECDSA", namedCurve: "P-256" }
        : undefined;
  if (!algorithm) {
    throw new EproxyError("PERMISSION_DENIED", `client ${client.id}: signing key must be RSA or EC P-256`);
  }
  return {
    key: key.toCryptoKey(algorithm, false, ["sign"]),
    ...(client.signingKeyId ? { kid: client.signingKeyId } : {}),
  };
}

const secretOf = (client: ClientConfig) => readFileSync(client.clientSecretFile as string, "utf8").trim();

/** How openid-client authenticates each method of the table in `auth/psc-client-auth.ts`. */
const CLIENT_AUTH: Record<
  PscAuthMethod,
  (client: ClientConfig, identity: ClientIdentity) => oidc.ClientAuth | Promise<oidc.ClientAuth>
> = {
  tls_client_auth: () => oidc.TlsClientAuth(),
  client_secret_basic: (client) => oidc.ClientSecretBasic(secretOf(client)),
  client_secret_post: (client) => oidc.ClientSecretPost(secretOf(client)),
  private_key_jwt: async (client, identity) => oidc.PrivateKeyJwt(await signingKey(client, identity)),
};

/** Creates the PSC gateway for the configured clients. */
export function createPscGateway(config: Readonly<Config>, clients: ClientLookup, log: Logger): PscGateway {
  const psc = config.psc;
  // Named in the log line of a refused handshake (which peer refused, and why).
  const pscHost = new URL(psc.discoveryUrl).host;
  const ca = psc.caFile ? readFileSync(psc.caFile, "utf8") : undefined;
  // Keyed by client id, rebuilt when the registry hands out another identity (certificate change).
  const agents = new Map<string, { identity: ClientIdentity; agent: Agent }>();
  const configs = new Map<
    string,
    { identity: ClientIdentity; client: string; p: Promise<oidc.Configuration> }
  >();
  let metadata: Promise<oidc.ServerMetadata> | undefined;
  const discoveryAgent = new Agent({ connect: { ...(ca ? { ca } : {}), minVersion: "TLSv1.2" } });

  function agentFor(clientId: string): Agent {
    const id = clients.identity(clientId);
    if (!id) throw new EproxyError("PERMISSION_DENIED", `unknown client ${clientId}`);
    const cached = agents.get(clientId);
    if (cached?.identity === id) return cached.agent;
    if (cached) void cached.agent.close().catch(() => {});
    const agent = new Agent({
      connect: { ...id.tls, ...(ca ? { ca } : {}), minVersion: "TLSv1.2" },
      keepAliveTimeout: 30_000,
      connections: 16,
    });
    agents.set(clientId, { identity: id, agent });
    return agent;
  }

  /** Last answer of the handshake probe, per client (so that an outage costs PSC one probe a minute). */
  const probed = new Map<string, { until: number; alert: string | undefined }>();

  /**
   * PSC's failure as eProxy reports it. A connection PSC closed without answering is probed once
   * (cached for a minute): a refused client certificate is a credentials problem, not PSC down.
   */
  async function pscFailure(
    err: unknown,
    what: string,
    clientId: string,
    endpoint: "token_endpoint" | "backchannel_authentication_endpoint" | "userinfo_endpoint",
  ): Promise<EproxyError> {
    if (err instanceof EproxyError || peerRefusedCertificate(err) || transportFailureOf(err) !== "closed") {
      return toPscError(err, what, log, pscHost);
    }
    const identity = clients.identity(clientId);
    const meta = await metadata?.catch(() => undefined);
    const aliases = (meta as { mtls_endpoint_aliases?: Record<string, string> } | undefined)
      ?.mtls_endpoint_aliases;
    const url = aliases?.[endpoint] ?? (meta?.[endpoint] as string | undefined);
    if (!identity || !url) return toPscError(err, what, log, pscHost);
    const key = `${clientId}\n${new URL(url).host}`;
    let p = probed.get(key);
    if (!p || p.until < Date.now()) {
      const alert = await certificateRefusal(url, {
        ...identity.tls,
        ...(ca ? { ca } : {}),
        minVersion: "TLSv1.2",
      });
      p = { until: Date.now() + 60_000, alert };
      probed.set(key, p);
    }
    if (!p.alert) return toPscError(err, what, log, pscHost);
    return toPscError(
      Object.assign(new Error(`TLS alert ${p.alert}`), {
        code: `ERR_SSL_TLSV1_ALERT_${p.alert}`,
        cause: err,
      }),
      what,
      log,
      new URL(url).host,
    );
  }

  function fetchWith(agent: Agent): oidc.CustomFetch {
    return async (url, options) => {
      const signal = options.signal
        ? AbortSignal.any([options.signal, AbortSignal.timeout(psc.timeoutMs)])
        : AbortSignal.timeout(psc.timeoutMs);
      const res = await undiciFetch(url, { ...(options as object), signal, dispatcher: agent } as Parameters<
        typeof undiciFetch
      >[1]);
      if (res.status === 502 || res.status === 503 || res.status === 504) {
        await res.body?.cancel();
        throw new HttpUnavailable(res.status, retryAfterMs(res.headers.get("retry-after")));
      }
      return res as unknown as Response;
    };
  }

  function loadMetadata(): Promise<oidc.ServerMetadata> {
    metadata ??= (async () => {
      // openid-client uses a URL containing /.well-known/ as-is: PSC's wallet-openid-configuration works.
      const cfg = await oidc.discovery(
        new URL(psc.discoveryUrl),
        "eproxy-discovery",
        undefined,
        oidc.None(),
        {
          [oidc.customFetch]: fetchWith(discoveryAgent),
          timeout: Math.ceil(psc.timeoutMs / 1000),
        },
      );
      const e = psc.endpoints;
      const overrides: Record<string, string | undefined> = {
        authorization_endpoint: e.authorization,
        token_endpoint: e.token,
        userinfo_endpoint: e.userinfo,
        backchannel_authentication_endpoint: e.backchannelAuthentication,
        end_session_endpoint: e.endSession,
        revocation_endpoint: e.revocation,
        introspection_endpoint: e.introspection,
        jwks_uri: e.jwks,
      };
      const m: Record<string, unknown> = { ...cfg.serverMetadata() };
      for (const [k, v] of Object.entries(overrides)) if (v) m[k] = v;
      return m as unknown as oidc.ServerMetadata;
    })().catch((err: unknown) => {
      metadata = undefined;
      throw toPscError(err, "discovery", log, pscHost);
    });
    return metadata;
  }

  function configFor(clientId: string): Promise<oidc.Configuration> {
    const client = clients.get(clientId);
    const identity = clients.identity(clientId);
    if (!client || !identity)
      return Promise.reject(new EproxyError("PERMISSION_DENIED", `unknown client ${clientId}`));
    const shape = `${client.authMethod}\n${client.clientSecretFile ?? ""}`;
    const cached = configs.get(clientId);
    let p = cached?.identity === identity && cached.client === shape ? cached.p : undefined;
    if (!p) {
      p = (async () => {
        const meta = await loadMetadata();
        const auth = await CLIENT_AUTH[client.authMethod](client, identity);
        const { mtls } = PSC_AUTH_METHODS[client.authMethod];
        const cfg = new oidc.Configuration(
          meta,
          clientId,
          {
            use_mtls_endpoint_aliases: mtls,
            tls_client_certificate_bound_access_tokens: mtls,
            [oidc.clockTolerance]: psc.clockToleranceSeconds,
          },
          auth,
        );
        cfg[oidc.customFetch] = fetchWith(agentFor(clientId));
        cfg.timeout = Math.ceil(psc.timeoutMs / 1000);
        // Verify ID token signatures against PSC's JWKS, not only their claims.
        oidc.enableNonRepudiationChecks(cfg);
        return cfg;
      })().catch((err: unknown) => {
        configs.delete(clientId);
        throw err;
      });
      configs.set(clientId, { identity, client: shape, p });
    }
    return p;
  }

  /**
   * The OAuth error PSC answered, from a JSON body or from a `WWW-Authenticate` challenge (how a
   * 401 `invalid_client` comes back). A refused client is eProxy's configuration problem, reported
   * as such rather than as PSC being down or the caller's input being wrong.
   */
  const oauthError = (err: unknown): { error: string } | undefined => {
    const error = oauthErrorOf(err)?.error;
    if (error === "invalid_client") {
      log.error({ err: (err as Error).message }, "Pro Santé Connect refused eProxy's client credentials");
      throw new EproxyError(
        "PERMISSION_DENIED",
        "Pro Santé Connect refused this client's credentials (invalid_client): check the client's configuration",
        { cause: err },
      );
    }
    return error ? { error } : undefined;
  };

  return {
    async startCiba(clientId, p) {
      const cfg = await configFor(clientId);
      try {
        const r = await oidc.initiateBackchannelAuthentication(cfg, {
          scope: p.scope,
          acr_values: p.acrValues,
          login_hint: p.loginHint,
          binding_message: p.bindingMessage,
          channel: p.channel,
        });
        return {
          authReqId: r.auth_req_id,
          expiresInSeconds: r.expires_in,
          ...(typeof r.interval === "number" ? { intervalSeconds: r.interval } : {}),
        };
      } catch (err) {
        const oe = oauthError(err);
        if (oe?.error === "unknown_user_id") {
          throw new EproxyError("INVALID_ARGUMENT", "Pro Santé Connect does not know this national id", {
            cause: err,
          });
        }
        if (oe) {
          throw new EproxyError("INVALID_ARGUMENT", `Pro Santé Connect refused the request (${oe.error})`, {
            cause: err,
          });
        }
        throw await pscFailure(
          err,
          "backchannel authentication",
          clientId,
          "backchannel_authentication_endpoint",
        );
      }
    },

    async pollCiba(clientId, authReqId): Promise<CibaPollOutcome> {
      const cfg = await configFor(clientId);
      try {
        const r = await oidc.genericGrantRequest(cfg, CIBA_GRANT, { auth_req_id: authReqId });
        return { kind: "approved", tokens: tokensOf(r), claims: claimsOf(r) };
      } catch (err) {
        const oe = oauthError(err);
        switch (oe?.error) {
          case "authorization_pending":
            return { kind: "pending" };
          case "slow_down":
            return { kind: "slow_down" };
          case "expired_token":
            return { kind: "expired" };
          case "access_denied":
            return { kind: "denied" };
          case undefined:
            break;
          default:
            return { kind: "failed", message: `Pro Santé Connect answered ${oe?.error}` };
        }
        const unavailable = findCause(err, (e): e is HttpUnavailable => e instanceof HttpUnavailable);
        if (unavailable)
          return {
            kind: "unavailable",
            ...(unavailable.retryAfterMs !== undefined ? { retryAfterMs: unavailable.retryAfterMs } : {}),
          };
        if (isNonConformingAnswer(err)) {
          log.warn({ codes: codesOf(err) }, "invalid CIBA answer from PSC");
          return { kind: "failed", message: "invalid answer from Pro Santé Connect" };
        }
        log.warn({ err: (err as Error).message }, "PSC unreachable while polling CIBA");
        return { kind: "unavailable" };
      }
    },

    async authorizationUrl(clientId, p) {
      const cfg = await configFor(clientId);
      return oidc
        .buildAuthorizationUrl(cfg, {
          redirect_uri: p.redirectUri,
          response_type: "code",
          scope: p.scope,
          acr_values: p.acrValues,
          state: p.state,
          nonce: p.nonce,
          code_challenge: p.codeChallenge,
          code_challenge_method: "S256",
        })
        .toString();
    },

    async exchangeCode(clientId, p) {
      const cfg = await configFor(clientId);
      try {
        const r = await oidc.authorizationCodeGrant(cfg, p.callbackUrl, {
          pkceCodeVerifier: p.codeVerifier,
          expectedState: p.state,
          expectedNonce: p.nonce,
          idTokenExpected: true,
        });
        return { tokens: tokensOf(r), claims: claimsOf(r) };
      } catch (err) {
        if (findCause(err, (e): e is HttpUnavailable => e instanceof HttpUnavailable)) {
          throw await pscFailure(err, "token", clientId, "token_endpoint");
        }
        const oe = oauthError(err);
        if (oe)
          throw new EproxyError("UNAUTHENTICATED", `Pro Santé Connect refused the code (${oe.error})`, {
            cause: err,
          });
        if (isNonConformingAnswer(err)) {
          throw new EproxyError("UNAUTHENTICATED", "the authorization response or ID token is invalid", {
            cause: err,
          });
        }
        throw await pscFailure(err, "token", clientId, "token_endpoint");
      }
    },

    async refresh(clientId, refreshToken) {
      const cfg = await configFor(clientId);
      try {
        return tokensOf(await oidc.refreshTokenGrant(cfg, refreshToken));
      } catch (err) {
        const oe = oauthError(err);
        if (oe?.error === "invalid_grant") {
          throw new EproxyError(
            "REAUTHENTICATION_REQUIRED",
            "the PSC session ended: re-authentication required",
            { cause: err },
          );
        }
        throw await pscFailure(err, "refresh", clientId, "token_endpoint");
      }
    },

    async userinfo(clientId, accessToken, sub) {
      const cfg = await configFor(clientId);
      try {
        return (await oidc.fetchUserInfo(cfg, accessToken, sub)) as Record<string, unknown>;
      } catch (err) {
        throw await pscFailure(err, "userinfo", clientId, "userinfo_endpoint");
      }
    },

    async endSession(clientId, idToken) {
      const cfg = await configFor(clientId);
      const endpoint = cfg.serverMetadata().end_session_endpoint;
      if (!endpoint) return false;
      try {
        const res = await fetchWith(agentFor(clientId))(endpoint, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ id_token_hint: idToken, client_id: clientId }).toString(),
          redirect: "manual",
        } as Parameters<oidc.CustomFetch>[1]);
        if (res.status >= 400) {
          log.warn({ status: res.status, body: (await res.text()).slice(0, 200) }, "PSC end-session refused");
          return false;
        }
        await res.body?.cancel();
        return true;
      } catch (err) {
        log.warn({ err: (err as Error).message }, "PSC end-session failed");
        return false;
      }
    },

    async revoke(clientId, token, hint) {
      const cfg = await configFor(clientId);
      if (!cfg.serverMetadata().revocation_endpoint) return;
      try {
        await oidc.tokenRevocation(cfg, token, { token_type_hint: hint });
      } catch (err) {
        log.warn({ err: (err as Error).message }, "PSC token revocation failed");
      }
    },

    async ready() {
      await loadMetadata();
    },

    async reachable() {
      // A fresh GET of discovery (not the cached copy): a 5xx, a refused connection, a TLS failure
      // or a timeout is PSC being unreachable now.
      const res = await fetchWith(discoveryAgent)(psc.discoveryUrl, {
        method: "GET",
      } as Parameters<oidc.CustomFetch>[1]);
      await res.body?.cancel();
      if (res.status >= 400) throw new Error(`PSC discovery answered ${res.status}`);
    },

    async close() {
      await Promise.all([...[...agents.values()].map((a) => a.agent), discoveryAgent].map((a) => a.close()));
    },
  };
}
