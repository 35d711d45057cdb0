/**
 * The REST facade of authentication (`/oauth2/...`), for backends that prefer plain JSON, and for
 * browsers in the code flow. Same domain calls as AuthService.
 */
import { toJson } from "@bufbuild/protobuf";
import { SessionSchema } from "../../gen/eproxy/v1/session_pb.ts";
import { assertSameClient, type ClientDirectory } from "../auth/callers.ts";
import type { Ciba, CibaView } from "../auth/ciba.ts";
import type { ClientRegistry } from "../auth/clients.ts";
import type { CodeFlow } from "../auth/code-flow.ts";
import type { Sessions, SessionView } from "../auth/sessions.ts";
import { EproxyError } from "../errors.ts";
import { headersOf, sessionTokenOf } from "../http/credentials.ts";
import { toSessionProto } from "../http/mappers.ts";
import { restCaller } from "./caller.ts";
import { readJsonObject, sendJson, writeHead } from "./respond.ts";
import type { RestContext, Route } from "./router.ts";

/** What the `/oauth2` routes use. */
export interface AuthRoutesDeps {
  clients: ClientDirectory & Pick<ClientRegistry, "get">;
  ciba: Pick<Ciba, "start" | "get" | "settled">;
  sessions: Pick<Sessions, "fresh" | "view" | "logout">;
  codeFlow: Pick<CodeFlow, "start" | "callback" | "redeem">;
}

/** Session JSON, as the protobuf JSON mapping of eproxy.v1.Session. */
function sessionJson(v: SessionView): unknown {
  return toJson(SessionSchema, toSessionProto(v));
}

/**
 * The session inside a CIBA answer: `reused` is said once, at the top of the answer (as
 * StartCibaResponse.reused), not again in the session.
 */
function cibaSessionJson(v: SessionView): unknown {
  const { reused: _said, ...session } = sessionJson(v) as Record<string, unknown>;
  return session;
}

/**
 * A CIBA request as REST JSON: the proto JSON names of PollCibaResponse/StartCibaResponse, except
 * `status` (`APPROVED`, not `CIBA_STATUS_APPROVED`) and `expiresAt` (an instant rather than
 * `expiresInSeconds`), as the README and the OpenAPI document say.
 */
function cibaJson(v: CibaView, reused?: boolean): Record<string, unknown> {
  return {
    authReqId: v.authReqId,
    status: v.status,
    expiresAt: new Date(v.expiresAt).toISOString(),
    intervalSeconds: v.intervalSeconds,
    bindingMessage: v.bindingMessage,
    ...(reused !== undefined ? { reused } : {}),
    ...(v.session ? { session: cibaSessionJson(v.session) } : {}),
    ...(v.errorMessage ? { errorMessage: v.errorMessage } : {}),
  };
}

/**
 * What a caller is told when StartCiba reuses a live session: the token is not in the answer because
 * eProxy keeps only its hash; the caller received it when the session was created.
 */
export const REUSED_SESSION_DETAIL =
  "This professional already has a live session with your client: no push was sent. Its session token " +
  "was returned to your client when the session was created (eProxy keeps only a hash of it); use that " +
  'token (DELETE /oauth2/session ends it), or start again with "newSession": true (a new push and a new ' +
  "session beside the live one).";

/**
 * Refuses members the operation does not know (the document's `additionalProperties: false`): a
 * misspelt `newSession` must not be ignored silently.
 */
function onlyMembers(body: Record<string, unknown>, known: readonly string[]): void {
  const unknown = Object.keys(body).find((k) => !known.includes(k));
  if (unknown !== undefined) {
    throw new EproxyError(
      "INVALID_ARGUMENT",
      `unknown member ${JSON.stringify(unknown.slice(0, 64))} (known: ${known.join(", ")})`,
    );
  }
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new EproxyError("INVALID_ARGUMENT", `${key} must be a string`);
  return v;
}

function optionalBoolean(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw new EproxyError("INVALID_ARGUMENT", `${key} must be true or false`);
  return v;
}

function channelOf(v: string | undefined): "CARD" | "MOBILE" | undefined {
  if (v === undefined) return undefined;
  if (v === "CARD" || v === "MOBILE") return v;
  throw new EproxyError("INVALID_ARGUMENT", "channel must be CARD or MOBILE");
}

/** Answers a settled CIBA request: 200 with the session, or a problem for the other final states. */
function finalAnswer(v: CibaView, reused: boolean): { status: number; body: unknown } {
  switch (v.status) {
    case "APPROVED":
      return { status: 200, body: cibaJson(v, reused) };
    case "DENIED":
      throw new EproxyError(
        "AUTHENTICATION_DENIED",
        v.errorMessage ?? "the professional refused the authentication",
      );
    case "EXPIRED":
      throw new EproxyError(
        "AUTHENTICATION_EXPIRED",
        v.errorMessage ?? "the professional did not answer in time",
      );
    default:
      throw new EproxyError("PSC_UNAVAILABLE", v.errorMessage ?? "the authentication failed");
  }
}

/** Routes of the `/oauth2` facade. */
export function createAuthRoutes(deps: AuthRoutesDeps): Route[] {
  const { ciba, sessions, codeFlow } = deps;
  const max = 64 * 1024;

  async function startCiba({ req, res, url }: RestContext): Promise<void> {
    const caller = restCaller(deps.clients, req);
    // `mode` is the OpenAPI document's enum: `async`, or absent (blocking). A typo must not block.
    const mode = url.searchParams.get("mode");
    if (mode !== null && mode !== "async") {
      throw new EproxyError("INVALID_ARGUMENT", 'mode must be "async" (or absent for a blocking call)');
    }
    const body = await readJsonObject(req, max);
    onlyMembers(body, ["clientId", "nationalId", "bindingMessage", "channel", "scope", "newSession"]);
    assertSameClient(caller, optionalString(body, "clientId"));
    const channel = channelOf(optionalString(body, "channel"));
    const bindingMessage = optionalString(body, "bindingMessage");
    const scope = optionalString(body, "scope");
    const newSession = optionalBoolean(body, "newSession");
    const started = await ciba.start(caller, {
      nationalId: optionalString(body, "nationalId") ?? "",
      ...(bindingMessage !== undefined ? { bindingMessage } : {}),
      ...(channel ? { channel } : {}),
      ...(scope ? { scope } : {}),
      ...(newSession ? { newSession: true } : {}),
    });
    if ("session" in started) {
      // The reference proxy answers 304 here; a JSON body says what the caller needs to know.
      sendJson(res, 200, {
        status: "APPROVED",
        reused: true,
        session: cibaSessionJson(started.session),
        detail: REUSED_SESSION_DETAIL,
      });
      return;
    }
    const asyncMode = mode === "async" || /\brespond-async\b/i.test(String(req.headers.prefer ?? ""));
    const location = `/oauth2/ciba/${encodeURIComponent(started.request.authReqId)}`;
    if (asyncMode) {
      sendJson(res, 202, cibaJson(started.request, started.reused), {
        location,
        ...(/respond-async/i.test(String(req.headers.prefer ?? ""))
          ? { "preference-applied": "respond-async" }
          : {}),
      });
      return;
    }
    // Blocking mode (what integrators already use): answer at a final state, up to the request's expiry.
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    const final = await ciba.settled(caller.id, started.request.authReqId, abort.signal);
    const { status, body: answer } = finalAnswer(final, started.reused);
    sendJson(res, status, answer);
  }

  return [
    { method: "POST", pattern: "/oauth2/ciba", handler: startCiba },
    {
      method: "GET",
      pattern: "/oauth2/ciba/:authReqId",
      handler: async ({ req, res, params }) => {
        const caller = restCaller(deps.clients, req);
        sendJson(res, 200, cibaJson(await ciba.get(caller.id, params.authReqId as string)));
      },
    },
    {
      // Reached by the end user's browser: no API key; the exact redirect URI match is the guard.
      method: "GET",
      pattern: "/oauth2/codeflow/:clientId",
      handler: async ({ res, params, url }) => {
        const client = deps.clients.get(params.clientId ?? "");
        if (!client) throw new EproxyError("NOT_FOUND", "unknown client");
        const { authorizationUrl } = await codeFlow.start(client, url.searchParams.get("redirectUri") ?? "");
        writeHead(res, 302, { location: authorizationUrl, "cache-control": "no-store" });
        res.end();
      },
    },
    {
      // PSC's redirect, through the browser: guarded by the single-use state.
      method: "GET",
      pattern: "/oauth2/codeflow/:clientId/callback",
      handler: async ({ res, params, url }) => {
        const target = await codeFlow.callback(params.clientId as string, url);
        writeHead(res, 302, { location: target, "cache-control": "no-store" });
        res.end();
      },
    },
    {
      method: "POST",
      pattern: "/oauth2/codeflow/token",
      handler: async ({ req, res }) => {
        const caller = restCaller(deps.clients, req);
        const body = await readJsonObject(req, max);
        onlyMembers(body, ["clientId", "code"]);
        assertSameClient(caller, optionalString(body, "clientId"));
        const session = await codeFlow.redeem(caller, optionalString(body, "code") ?? "");
        sendJson(res, 200, sessionJson(session));
      },
    },
    {
      method: "GET",
      pattern: "/oauth2/session",
      handler: async ({ req, res }) => {
        const caller = restCaller(deps.clients, req);
        const rec = await sessions.fresh(sessionTokenOf(headersOf(req)), caller.id);
        sendJson(res, 200, sessionJson(await sessions.view(rec)));
      },
    },
    {
      method: "DELETE",
      pattern: "/oauth2/session",
      handler: async ({ req, res }) => {
        const caller = restCaller(deps.clients, req);
        const pscLoggedOut = await sessions.logout(sessionTokenOf(headersOf(req)), caller.id);
        sendJson(res, 200, { loggedOut: true, pscLoggedOut });
      },
    },
  ];
}
