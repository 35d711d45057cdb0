/**
 * A Pro Santé Connect simulator built on panva's oidc-provider (a certified OpenID Provider), with
 * PSC's realm paths and quirks: the `wallet-openid-configuration` discovery path, CIBA in poll mode
 * with the `channel` parameter, tls_client_auth with the sandbox PKI, 120 s access tokens, 30 min
 * refresh tokens, PSC-shaped userinfo, a control API and fault switches. Sandbox and tests only.
 */
import { createHash, randomBytes, type X509Certificate } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { exportJWK, generateKeyPair } from "jose";
import Provider, { errors, type KoaContextWithOIDC } from "oidc-provider";
import { PSC_AUTH_METHOD_NAMES, type PscAuthMethod } from "../auth/psc-client-auth.ts";
import { PROFESSIONALS, type PscClaims } from "./professionals.ts";

/** Realm path of PSC's issuer. */
export const PSC_REALM_PATH = "/auth/realms/esante-wallet";

/** A client registered at the simulator. */
export interface SimulatedClient {
  /** client_id, equal to the CN of its certificate. */
  id: string;
  /** Registered redirect URIs (eProxy's callback). */
  redirectUris: string[];
  /** Client authentication method at the token endpoint. */
  authMethod?: PscAuthMethod;
  /** Secret for client_secret_* methods. */
  secret?: string;
  /** Public keys (JWK) for private_key_jwt. */
  jwks?: { keys: Record<string, unknown>[] };
}

/** Switches that change the simulator's behaviour at runtime. */
export interface PscFaults {
  /** Answer this many CIBA polls with `slow_down`. */
  slowDownPolls: number;
  /** Answer this many CIBA polls with 503 and `Retry-After`. */
  unavailablePolls: number;
  /** Retry-After value of those 503 answers, in seconds. */
  retryAfterSeconds: number;
  /** Answer every refresh with `invalid_grant`. */
  refreshInvalidGrant: boolean;
  /** Answer refresh-token grants 503 with Retry-After (`retryAfterSeconds`): PSC's token endpoint down. */
  refreshUnavailable: boolean;
  /** Make the code flow end with this error (e.g. `access_denied`). */
  codeFlowError: string | null;
  /**
   * Refuse client certificates: a connection that presents one is closed once the handshake is done
   * (and at its next request), as a TLS 1.3 client sees a server that refuses its certificate
   * (without the alert). Callers without a certificate (the control API) are still served.
   */
  tlsRefusal: boolean;
}

/** Counters read by tests and by `GET /control/stats`. */
export interface PscStats {
  /** Backchannel authentication requests (pushes to the professional). */
  cibaRequests: number;
  /** CIBA token polls, with their time (ms since epoch) per auth_req_id. */
  cibaPolls: Record<string, number[]>;
  /** refresh_token grants received. */
  refreshes: number;
  /** Calls to the end-session endpoint. */
  endSessions: number;
  /** Calls to the revocation endpoint. */
  revocations: number;
  /** Calls to userinfo. */
  userinfo: number;
  /** W3C `traceparent` headers received (tracing tests), oldest first. */
  traceparents: string[];
}

/** A CIBA request waiting for the professional (the push on the e-CPS app). */
export interface PendingPush {
  /** PSC's own auth_req_id. */
  authReqId: string;
  nationalId: string;
  bindingMessage: string;
  /** MOBILE or CARD. */
  channel: string;
  /** The requesting client (eProxy's client id at PSC). */
  clientId: string;
  /** When it was sent and when it expires (ms since the epoch). */
  sentAt: number;
  expiresAt: number;
}

/**
 * What the simulator tells its listeners (`events`): `push` (a PendingPush), `settled`
 * (`{ authReqId, outcome: "APPROVED" | "DENIED" }`), `interaction` (a code-flow login waiting for a
 * professional to be chosen: `{ uid, clientId }`).
 */
export type PscEvents = {
  push: [PendingPush];
  settled: [{ authReqId: string; outcome: "APPROVED" | "DENIED" }];
  interaction: [{ uid: string; clientId: string }];
};

/** Options of the simulator. */
export interface PscSimulatorOptions {
  /** Port (0 picks one). */
  port: number;
  /**
   * Port in the issuer and endpoint URLs when clients reach the simulator through a proxy (a
   * fault-injecting TCP proxy in the chaos tests); default: the listening port.
   */
  publicPort?: number;
  /** Host name used in the issuer (must match the server certificate). */
  host?: string;
  /** Address the simulator listens on (default 127.0.0.1; the multi-host rig uses its namespace's). */
  listenAddress?: string;
  /** Server TLS material and the CA that issued client certificates. */
  tls: { cert: string; key: string; ca: string };
  /** Registered clients. */
  clients: SimulatedClient[];
  /** Delay before a CIBA request is approved on its own; null = wait for the control API. */
  autoApproveMs?: number | null;
  /** Access token lifetime (PSC: 120 s). */
  accessTokenTtlSeconds?: number;
  /** Refresh token lifetime (PSC: 30 min). */
  refreshTokenTtlSeconds?: number;
  /** CIBA request lifetime (PSC: about 120 s). */
  cibaTtlSeconds?: number;
  /** `interval` announced for CIBA polling, in seconds (PSC: 5). */
  cibaIntervalSeconds?: number;
  /** Rotate refresh tokens on use. */
  rotateRefreshToken?: boolean;
  /** acr given to authentications (PSC may answer above what was asked). */
  acr?: "eidas1" | "eidas2" | "eidas3";
  /** National id logged in by the code flow when no login_hint is given. */
  codeFlowNationalId?: string;
  /** Resource servers (target authorization servers) allowed to introspect PSC tokens. */
  introspectionClients?: Array<{ id: string; secret: string }>;
}

/** A running PSC simulator. */
export interface PscSimulator {
  /** Issuer URL. */
  issuer: string;
  /** PSC-style discovery URL (`/.well-known/wallet-openid-configuration`). */
  discoveryUrl: string;
  /** Port. */
  port: number;
  /** Fault switches (mutable). */
  faults: PscFaults;
  /** Counters. */
  stats: PscStats;
  /**
   * Mutable settings. `loginPageUrl`: when set, a code-flow login is not finished at once: the
   * browser is sent to `loginPageUrl + uid` (the sandbox console's PSC-like page), which finishes
   * it with `finishLogin`.
   */
  settings: {
    autoApproveMs: number | null;
    acr: string;
    cibaTtlSeconds: number;
    codeFlowNationalId: string;
    loginPageUrl: string | null;
  };
  /** Pushes, settlements and code-flow logins as they happen. */
  events: EventEmitter<PscEvents>;
  /** Pending CIBA requests (the pushes waiting on the professionals' phones). */
  pending(): PendingPush[];
  /**
   * Approves a pending CIBA request, named by PSC's auth_req_id or by the id its client knows
   * (through `resolveAuthReqId`).
   */
  approve(authReqId: string): Promise<void>;
  /** Denies a pending CIBA request (`access_denied`), named as for `approve`. */
  deny(authReqId: string): Promise<void>;
  /**
   * Maps an id PSC does not know (e.g. eProxy's `authReqId`, which its backends see) to PSC's
   * auth_req_id; set by the sandbox, so that the control API accepts the backend's id.
   */
  resolveAuthReqId?: (id: string) => Promise<string | undefined>;
  /**
   * Ends a code-flow login waiting on the login page: as `nationalId`, or refused (`access_denied`)
   * when null. Returns where to send the browser next.
   */
  finishLogin(uid: string, nationalId: string | null): Promise<string>;
  /** Resets faults and counters. */
  reset(): void;
  /** Stops the server and its timers. */
  close(): Promise<void>;
}

const CIBA_GRANT = "urn:openid:params:grant-type:ciba";

function emptyStats(): PscStats {
  return {
    cibaRequests: 0,
    cibaPolls: {},
    refreshes: 0,
    endSessions: 0,
    revocations: 0,
    userinfo: 0,
    traceparents: [],
  };
}

function emptyFaults(): PscFaults {
  return {
    slowDownPolls: 0,
    unavailablePolls: 0,
    retryAfterSeconds: 2,
    refreshInvalidGrant: false,
    refreshUnavailable: false,
    codeFlowError: null,
    tlsRefusal: false,
  };
}

function cnOf(subject: string): string | undefined {
  return /(?:^|\n|,\s*)CN=([^,\n]+)/.exec(subject)?.[1];
}

async function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw new Error("body too large");
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, "content-type": "application/json", "cache-control": "no-store" });
  res.end(text);
}

/** Starts the PSC simulator. */
export async function startPscSimulator(opts: PscSimulatorOptions): Promise<PscSimulator> {
  const host = opts.host ?? "localhost";
  const faults = emptyFaults();
  let stats = emptyStats();
  const settings = {
    autoApproveMs: opts.autoApproveMs === undefined ? 3_000 : opts.autoApproveMs,
    acr: opts.acr ?? "eidas1",
    cibaTtlSeconds: opts.cibaTtlSeconds ?? 120,
    codeFlowNationalId: opts.codeFlowNationalId ?? "899700218896",
    loginPageUrl: null as string | null,
  };
  const events = new EventEmitter<PscEvents>();
  const pending = new Map<
    string,
    {
      request: InstanceType<Provider["BackchannelAuthenticationRequest"]>;
      timer?: NodeJS.Timeout;
      sentAt: number;
      expiresAt: number;
    }
  >();

  const server = https.createServer({
    cert: opts.tls.cert,
    key: opts.tls.key,
    ca: opts.tls.ca,
    requestCert: true,
    rejectUnauthorized: false,
  });
  const refused = (socket: TLSSocket) =>
    faults.tlsRefusal && Object.keys(socket.getPeerCertificate?.() ?? {}).length > 0;
  server.on("secureConnection", (socket: TLSSocket) => {
    if (refused(socket)) socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.listenAddress ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const origin = `https://${host}:${opts.publicPort ?? port}`;
  const issuer = `${origin}${PSC_REALM_PATH}`;

  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: "psc-sim-rs256", alg: "RS256", use: "sig" };

  const provider = new Provider(issuer, {
    clients: [
      ...(opts.introspectionClients ?? []).map((c) => ({
        client_id: c.id,
        client_secret: c.secret,
        token_endpoint_auth_method: "client_secret_basic",
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      })),
      ...opts.clients.map((c) => ({
        client_id: c.id,
        ...(c.secret ? { client_secret: c.secret } : {}),
        ...(c.jwks ? { jwks: c.jwks } : {}),
        token_endpoint_auth_method: c.authMethod ?? "tls_client_auth",
        ...((c.authMethod ?? "tls_client_auth") === "tls_client_auth"
          ? { tls_client_auth_subject_dn: `CN=${c.id}` }
          : {}),
        grant_types: ["authorization_code", "refresh_token", CIBA_GRANT],
        response_types: ["code"],
        redirect_uris: c.redirectUris,
        backchannel_token_delivery_mode: "poll",
        tls_client_certificate_bound_access_tokens: (c.authMethod ?? "tls_client_auth") === "tls_client_auth",
        id_token_signed_response_alg: "RS256",
      })),
    ],
    jwks: { keys: [jwk] },
    cookies: {
      keys: [randomBytes(32).toString("hex")],
      long: { sameSite: "none" },
      short: { sameSite: "none" },
    },
    scopes: ["openid", "offline_access", "scope_all"],
    claims: {
      openid: ["sub"],
      scope_all: [
        "SubjectNameID",
        "preferred_username",
        "given_name",
        "family_name",
        "SubjectRefPro",
        "SubjectRole",
        "Secteur_Activite",
        "otherIds",
        "authMode",
      ],
    },
    acrValues: ["eidas1", "eidas2", "eidas3"],
    clientAuthMethods: [...PSC_AUTH_METHOD_NAMES],
    extraParams: {
      channel(_ctx: KoaContextWithOIDC, value: string | undefined) {
        if (value !== undefined && value !== "CARD" && value !== "MOBILE") {
          throw new errors.InvalidRequest("channel must be CARD or MOBILE");
        }
      },
    },
    routes: {
      authorization: "/protocol/openid-connect/auth",
      backchannel_authentication: "/protocol/openid-connect/ext/ciba/auth",
      token: "/protocol/openid-connect/token",
      userinfo: "/protocol/openid-connect/userinfo",
      introspection: "/protocol/openid-connect/token/introspect",
      revocation: "/protocol/openid-connect/revoke",
      end_session: "/protocol/openid-connect/logout",
      jwks: "/protocol/openid-connect/certs",
    },
    ttl: {
      AccessToken: opts.accessTokenTtlSeconds ?? 120,
      RefreshToken: opts.refreshTokenTtlSeconds ?? 1800,
      IdToken: 3600,
      Interaction: 600,
      Session: 4 * 3600,
      Grant: 4 * 3600,
      BackchannelAuthenticationRequest: () => settings.cibaTtlSeconds,
      AuthorizationCode: 60,
    },
    rotateRefreshToken: opts.rotateRefreshToken ?? false,
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    pkce: { required: () => true },
    // Keycloak (PSC) accepts POST on the end-session endpoint; eProxy uses it to keep the ID token out of URLs.
    enableHttpPostMethods: true,
    clientBasedCORS: () => false,
    findAccount: async (_ctx, sub) => {
      const claims: PscClaims | undefined = PROFESSIONALS[sub];
      if (!claims) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...claims, authMode: "MOBILE" }) };
    },
    interactions: { url: (_ctx, interaction) => `${PSC_REALM_PATH}/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      introspection: {
        enabled: true,
        // Target authorization servers introspect tokens issued to the proxy's clients.
        allowedPolicy: async (_ctx: KoaContextWithOIDC, client: { clientId: string }) =>
          (opts.introspectionClients ?? []).some((c) => c.id === client.clientId),
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (
          _ctx: KoaContextWithOIDC,
          client: { clientId: string },
          token: { clientId?: string },
        ) => token.clientId === client.clientId,
      },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        certificateBoundAccessTokens: true,
        getCertificate(ctx: KoaContextWithOIDC) {
          const peer = (ctx.socket as TLSSocket).getPeerX509Certificate?.();
          return peer ?? undefined;
        },
        certificateAuthorized: (ctx: KoaContextWithOIDC) => (ctx.socket as TLSSocket).authorized === true,
        certificateSubjectMatches(ctx: KoaContextWithOIDC, property: string, expected: string) {
          const peer = (ctx.socket as TLSSocket).getPeerX509Certificate?.() as X509Certificate | undefined;
          if (!peer || property !== "tls_client_auth_subject_dn") return false;
          return cnOf(peer.subject) === cnOf(expected);
        },
      },
      ciba: {
        enabled: true,
        deliveryModes: ["poll"],
        processLoginHint: async (_ctx: KoaContextWithOIDC, loginHint: string) =>
          PROFESSIONALS[loginHint] ? loginHint : undefined,
        validateBindingMessage: async (_ctx: KoaContextWithOIDC, bindingMessage?: string) => {
          if (bindingMessage !== undefined && !/^\d{2}$/.test(bindingMessage)) {
            throw new errors.InvalidBindingMessage("binding_message must be two digits");
          }
        },
        validateRequestContext: async () => {},
        verifyUserCode: async () => {},
        triggerAuthenticationDevice: async (_ctx: KoaContextWithOIDC, request) => {
          stats.cibaRequests++;
          const sentAt = Date.now();
          const entry: {
            request: typeof request;
            timer?: NodeJS.Timeout;
            sentAt: number;
            expiresAt: number;
          } = {
            request,
            sentAt,
            expiresAt: sentAt + settings.cibaTtlSeconds * 1000,
          };
          pending.set(request.jti, entry);
          events.emit("push", pushOf(request.jti, entry));
          if (settings.autoApproveMs !== null) {
            entry.timer = setTimeout(() => {
              approve(request.jti).catch(() => {});
            }, settings.autoApproveMs);
            entry.timer.unref();
          }
        },
      },
    },
  } as ConstructorParameters<typeof Provider>[1]);
  provider.proxy = false;
  // EPROXY_SIM_DEBUG=1: print why the simulator refused a client or a grant (development aid).
  if (process.env.EPROXY_SIM_DEBUG) {
    for (const ev of ["backchannel_authentication.error", "grant.error", "server_error"]) {
      provider.on(ev as "server_error", (_ctx: unknown, err: Error & { error_detail?: string }) =>
        process.stderr.write(`psc-simulator ${ev}: ${err.message} ${err.error_detail ?? ""}\n`),
      );
    }
  }

  // PSC answers CIBA requests with an `interval`; oidc-provider does not, so add it.
  provider.use(async (ctx, next) => {
    await next();
    if (
      ctx.oidc?.route === "backchannel_authentication" &&
      ctx.status === 200 &&
      ctx.body &&
      typeof ctx.body === "object"
    ) {
      (ctx.body as Record<string, unknown>).interval = opts.cibaIntervalSeconds ?? 5;
    }
    // Keycloak (PSC's engine) adds its SSO session id, `session_state`, to every token answer; the
    // same for the whole session (its refreshes too). Opaque to eProxy.
    const grantId = ctx.oidc?.entities.Grant?.jti;
    if (
      ctx.oidc?.route === "token" &&
      ctx.status === 200 &&
      grantId &&
      ctx.body &&
      typeof ctx.body === "object"
    ) {
      (ctx.body as Record<string, unknown>).session_state = createHash("sha256")
        .update(`session_state\n${grantId}`)
        .digest("base64url")
        .slice(0, 32);
    }
  });

  type CibaRequest = InstanceType<Provider["BackchannelAuthenticationRequest"]>;
  function pushOf(
    authReqId: string,
    { request, sentAt, expiresAt }: { request: CibaRequest; sentAt: number; expiresAt: number },
  ): PendingPush {
    const params = (request.params ?? {}) as Record<string, string>;
    return {
      authReqId,
      nationalId: request.accountId as string,
      bindingMessage: params.binding_message ?? "",
      channel: params.channel ?? "",
      clientId: request.clientId as string,
      sentAt,
      expiresAt,
    };
  }

  /** PSC's auth_req_id of `id`, which may be the id the client knows (resolveAuthReqId). */
  async function pendingEntry(id: string): Promise<[string, NonNullable<ReturnType<typeof pending.get>>]> {
    let entry = pending.get(id);
    if (!entry && sim.resolveAuthReqId) {
      const resolved = await sim.resolveAuthReqId(id);
      if (resolved) {
        id = resolved;
        entry = pending.get(id);
      }
    }
    if (!entry) throw new Error("unknown auth_req_id");
    return [id, entry];
  }

  async function approve(given: string): Promise<void> {
    const [authReqId, entry] = await pendingEntry(given);
    pending.delete(authReqId);
    clearTimeout(entry.timer);
    const { request } = entry;
    const grant = new provider.Grant({ accountId: request.accountId, clientId: request.clientId });
    grant.addOIDCScope(request.scope ?? "openid");
    await grant.save();
    await provider.backchannelResult(request, grant, {
      acr: settings.acr,
      authTime: Math.floor(Date.now() / 1000),
    });
    events.emit("settled", { authReqId, outcome: "APPROVED" });
  }

  async function deny(given: string): Promise<void> {
    const [authReqId, entry] = await pendingEntry(given);
    pending.delete(authReqId);
    clearTimeout(entry.timer);
    await provider.backchannelResult(entry.request, new errors.AccessDenied("the professional refused"));
    events.emit("settled", { authReqId, outcome: "DENIED" });
  }

  const callback = provider.callback();

  async function interaction(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (faults.codeFlowError) {
      await provider.interactionFinished(
        req,
        res,
        { error: faults.codeFlowError, error_description: "simulated failure" },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    const params = details.params as Record<string, string | undefined>;
    // Browsers (they ask for HTML) get the page; scripts following redirects (curl) are signed in at once.
    if (settings.loginPageUrl && /\btext\/html\b/.test(req.headers.accept ?? "")) {
      // The sandbox console's PSC-like page: a person chooses the professional and approves.
      const query = new URLSearchParams({ client: params.client_id ?? "", hint: params.login_hint ?? "" });
      events.emit("interaction", { uid: details.uid, clientId: params.client_id ?? "" });
      res.writeHead(303, { location: `${settings.loginPageUrl}${encodeURIComponent(details.uid)}?${query}` });
      res.end();
      return;
    }
    const accountId =
      params.login_hint && PROFESSIONALS[params.login_hint] ? params.login_hint : settings.codeFlowNationalId;
    const grant = new provider.Grant({ accountId, clientId: params.client_id as string });
    grant.addOIDCScope(params.scope ?? "openid");
    const grantId = await grant.save();
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId, acr: settings.acr, amr: ["pop"] }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
  }

  async function finishLogin(uid: string, nationalId: string | null): Promise<string> {
    const found = await provider.Interaction.find(uid);
    if (!found) throw new Error("unknown or expired login");
    const params = found.params as Record<string, string | undefined>;
    if (nationalId === null) {
      found.result = { error: "access_denied", error_description: "the professional refused" };
    } else {
      if (!PROFESSIONALS[nationalId]) throw new Error("unknown professional");
      const grant = new provider.Grant({ accountId: nationalId, clientId: params.client_id as string });
      grant.addOIDCScope(params.scope ?? "openid");
      const grantId = await grant.save();
      found.result = {
        login: { accountId: nationalId, acr: settings.acr, amr: ["pop"] },
        consent: { grantId },
      };
    }
    await found.save(Math.max(1, (found.exp ?? 0) - Math.floor(Date.now() / 1000)));
    return found.returnTo;
  }

  async function control(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const m = /^\/control\/ciba\/([^/]+)\/(approve|deny)$/.exec(path);
    if (m && req.method === "POST") {
      const id = decodeURIComponent(m[1] as string);
      try {
        await (m[2] === "approve" ? approve(id) : deny(id));
        json(res, 200, { ok: true });
      } catch {
        json(res, 404, { error: "unknown auth_req_id" });
      }
      return;
    }
    if (path === "/control/ciba" && req.method === "GET") return json(res, 200, { pending: listPending() });
    if (path === "/control/stats" && req.method === "GET") return json(res, 200, stats);
    if (path === "/control/faults" && req.method === "GET") return json(res, 200, { faults, settings });
    if (path === "/control/faults" && req.method === "POST") {
      const body = JSON.parse((await readBody(req)).toString() || "{}") as Partial<
        PscFaults & typeof settings
      >;
      for (const k of Object.keys(faults) as Array<keyof PscFaults>)
        if (k in body) (faults as unknown as Record<string, unknown>)[k] = body[k];
      for (const k of Object.keys(settings) as Array<keyof typeof settings>)
        if (k in body) (settings as Record<string, unknown>)[k] = body[k];
      return json(res, 200, { faults, settings });
    }
    if (path === "/control/reset" && req.method === "POST") {
      reset();
      return json(res, 200, { ok: true });
    }
    json(res, 404, { error: "not found" });
  }

  function listPending() {
    for (const [id, e] of pending) {
      if (e.request.isExpired) {
        clearTimeout(e.timer);
        pending.delete(id);
      }
    }
    return [...pending.entries()].map(([authReqId, entry]) => pushOf(authReqId, entry));
  }

  function reset(): void {
    Object.assign(faults, emptyFaults());
    stats = emptyStats();
    sim.stats = stats;
  }

  server.on(
    "request",
    (req: IncomingMessage & { originalUrl?: string; body?: Buffer }, res: ServerResponse) => {
      if (refused(req.socket as TLSSocket)) {
        req.socket.destroy();
        return;
      }
      const url = req.url ?? "/";
      const path = url.split("?")[0] ?? "/";
      const traceparent = req.headers.traceparent;
      if (typeof traceparent === "string" && stats.traceparents.length < 1000)
        stats.traceparents.push(traceparent);
      (async () => {
        if (path.startsWith("/control/")) return control(req, res, path);
        if (!path.startsWith(PSC_REALM_PATH)) return json(res, 404, { error: "not found" });
        let inner = url.slice(PSC_REALM_PATH.length) || "/";
        // PSC's non-standard discovery path.
        if (inner.startsWith("/.well-known/wallet-openid-configuration")) {
          inner = inner.replace("wallet-openid-configuration", "openid-configuration");
        }
        const innerPath = inner.split("?")[0];
        if (innerPath?.startsWith("/interaction/") && req.method === "GET") {
          req.originalUrl = `${PSC_REALM_PATH}${inner}`;
          req.url = inner;
          return interaction(req, res);
        }
        if (innerPath === "/protocol/openid-connect/token" && req.method === "POST") {
          // Peek at the grant for counters and faults; oidc-provider then reads the parsed body.
          const raw = await readBody(req);
          req.body = raw;
          const form = new URLSearchParams(raw.toString());
          const grant = form.get("grant_type");
          if (grant === CIBA_GRANT) {
            const id = form.get("auth_req_id") ?? "";
            stats.cibaPolls[id] ??= [];
            stats.cibaPolls[id].push(Date.now());
            if (faults.unavailablePolls > 0) {
              faults.unavailablePolls--;
              res.writeHead(503, {
                "retry-after": String(faults.retryAfterSeconds),
                "content-type": "text/html",
              });
              res.end("<html><body>Service Unavailable</body></html>");
              return;
            }
            if (faults.slowDownPolls > 0) {
              faults.slowDownPolls--;
              return json(res, 400, { error: "slow_down", error_description: "polling too fast" });
            }
          } else if (grant === "refresh_token") {
            stats.refreshes++;
            if (faults.refreshUnavailable) {
              res.writeHead(503, {
                "retry-after": String(faults.retryAfterSeconds),
                "content-type": "text/html",
              });
              res.end("<html><body>Service Unavailable</body></html>");
              return;
            }
            if (faults.refreshInvalidGrant) {
              return json(res, 400, { error: "invalid_grant", error_description: "Token is not active" });
            }
          }
        }
        if (innerPath === "/protocol/openid-connect/logout") stats.endSessions++;
        if (innerPath === "/protocol/openid-connect/revoke") stats.revocations++;
        if (innerPath === "/protocol/openid-connect/userinfo") stats.userinfo++;
        // oidc-provider derives its mount path from originalUrl minus url.
        req.originalUrl = `${PSC_REALM_PATH}${inner}`;
        req.url = inner;
        callback(req, res);
      })().catch(() => {
        if (!res.headersSent) json(res, 500, { error: "server_error" });
        else res.end();
      });
    },
  );

  const sim: PscSimulator = {
    issuer,
    discoveryUrl: `${issuer}/.well-known/wallet-openid-configuration`,
    port,
    faults,
    stats,
    settings,
    events,
    pending: listPending,
    approve,
    deny,
    finishLogin,
    reset,
    async close() {
      for (const e of pending.values()) clearTimeout(e.timer);
      pending.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return sim;
}
