/**
 * Connect implementation of eproxy.v1.AuthService: authenticate the caller, decode, call the auth
 * domain, encode.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { type AuthService, Channel } from "../../gen/eproxy/v1/auth_pb.ts";
import { assertSameClient, type ClientDirectory } from "../auth/callers.ts";
import type { Ciba } from "../auth/ciba.ts";
import type { CodeFlow } from "../auth/code-flow.ts";
import type { Sessions } from "../auth/sessions.ts";
import { EproxyError } from "../errors.ts";
import { sessionTokenOf } from "../http/credentials.ts";
import { toPollCibaProto, toSessionProto } from "../http/mappers.ts";
import { callerOf } from "./caller.ts";

/** What AuthService uses. */
export interface AuthServiceDeps {
  clients: ClientDirectory;
  ciba: Pick<Ciba, "start" | "get" | "watch">;
  sessions: Pick<Sessions, "fresh" | "view" | "logout">;
  codeFlow: Pick<CodeFlow, "start" | "redeem">;
}

function channelOf(c: Channel): "CARD" | "MOBILE" | undefined {
  if (c === Channel.CARD) return "CARD";
  if (c === Channel.MOBILE) return "MOBILE";
  if (c === Channel.UNSPECIFIED) return undefined;
  throw new EproxyError("INVALID_ARGUMENT", "channel must be CHANNEL_CARD or CHANNEL_MOBILE");
}

/** Creates the AuthService implementation. */
export function createAuthService(deps: AuthServiceDeps): ServiceImpl<typeof AuthService> {
  const { ciba, sessions, codeFlow } = deps;
  return {
    async startCiba(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      assertSameClient(caller, req.clientId);
      const channel = channelOf(req.channel);
      const r = await ciba.start(caller, {
        nationalId: req.nationalId,
        bindingMessage: req.bindingMessage,
        ...(channel ? { channel } : {}),
        ...(req.scope ? { scope: req.scope } : {}),
        ...(req.newSession ? { newSession: true } : {}),
      });
      if ("session" in r) return { reused: true, session: toSessionProto(r.session) };
      return {
        authReqId: r.request.authReqId,
        expiresInSeconds: Math.max(0, Math.round((r.request.expiresAt - Date.now()) / 1000)),
        intervalSeconds: r.request.intervalSeconds,
        bindingMessage: r.request.bindingMessage,
        reused: r.reused,
      };
    },

    async pollCiba(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      return toPollCibaProto(await ciba.get(caller.id, req.authReqId));
    },

    async *watchCiba(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      for await (const v of ciba.watch(caller.id, req.authReqId, ctx.signal)) {
        const { status, session, errorMessage } = toPollCibaProto(v);
        yield { status, ...(session ? { session } : {}), errorMessage };
      }
    },

    async startCodeFlow(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      assertSameClient(caller, req.clientId);
      return codeFlow.start(caller, req.redirectUri);
    },

    async codeFlowCallback(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      assertSameClient(caller, req.clientId);
      return { session: toSessionProto(await codeFlow.redeem(caller, req.code)) };
    },

    async getSession(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      const rec = await sessions.fresh(sessionTokenOf(ctx.requestHeader, req.sessionToken), caller.id);
      return { session: toSessionProto(await sessions.view(rec)) };
    },

    async logout(req, ctx) {
      const caller = callerOf(deps.clients, ctx);
      return {
        pscLoggedOut: await sessions.logout(sessionTokenOf(ctx.requestHeader, req.sessionToken), caller.id),
      };
    },
  };
}
