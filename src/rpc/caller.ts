/**
 * Who an RPC comes from: the TLS peer carried into handlers as a context value, and the client the
 * request's credentials authenticate (same rules as the REST facade, parsed by
 * `http/credentials.ts`), remembered in the context for the refusal trace.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { authenticateCaller, type ClientDirectory } from "../auth/callers.ts";
import type { ClientConfig } from "../config.ts";
import { credentialsOf, type Peer } from "../http/credentials.ts";

/** Context key carrying the Peer into Connect handlers. */
export const kPeer = createContextKey<Peer>({}, { description: "TLS peer" });

/** Context key the RPC layer fills with the authenticated client id (for refusal traces). */
export const kCallerId = createContextKey<string>("", { description: "authenticated client id" });

/** The authenticated client of an RPC (UNAUTHENTICATED otherwise). */
export function callerOf(clients: ClientDirectory, ctx: HandlerContext): ClientConfig {
  const client = authenticateCaller(clients, credentialsOf(ctx.requestHeader, ctx.values.get(kPeer)));
  ctx.values.set(kCallerId, client.id);
  return client;
}
