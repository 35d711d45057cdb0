/**
 * Who a REST request comes from: the client its credentials authenticate (same rules as the Connect
 * services, parsed by `http/credentials.ts`), remembered for the request's refusal trace.
 */
import { authenticateCaller, type ClientDirectory } from "../auth/callers.ts";
import type { ClientConfig } from "../config.ts";
import { credentialsOf, headersOf, peerOf } from "../http/credentials.ts";
import { requestContext } from "../log.ts";
import type { NodeRequest } from "./respond.ts";

/** Callers of requests served outside a request context (the context's access line holds them otherwise). */
const callers = new WeakMap<object, string>();

/** The authenticated client of a REST request (UNAUTHENTICATED otherwise). */
export function restCaller(clients: ClientDirectory, req: NodeRequest): ClientConfig {
  const client = authenticateCaller(clients, credentialsOf(headersOf(req), peerOf(req)));
  const rc = requestContext.getStore();
  if (rc) rc.access.clientId = client.id;
  else callers.set(req, client.id);
  return client;
}

/** The client a request authenticated as, if it got that far. */
export function callerIdOf(req: NodeRequest): string | undefined {
  return requestContext.getStore()?.access.clientId ?? callers.get(req);
}
