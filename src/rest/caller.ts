/**
 * Who a REST request comes from: the client its credentials authenticate (same rules as the Connect
 * services, parsed by `http/credentials.ts`), remembered for the request's refusal trace.
 */
import { authenticateCaller, type ClientDirectory } from "../auth/callers.ts";
import type { ClientConfig } from "../config.ts";
import { credentialsOf, headersOf, peerOf } from "../http/credentials.ts";
import { noteAccess } from "../log.ts";
import type { NodeRequest } from "./respond.ts";

const callers = new WeakMap<object, string>();

/** The authenticated client of a REST request (UNAUTHENTICATED otherwise). */
export function restCaller(clients: ClientDirectory, req: NodeRequest): ClientConfig {
  const client = authenticateCaller(clients, credentialsOf(headersOf(req), peerOf(req)));
  callers.set(req, client.id);
  noteAccess({ clientId: client.id });
  return client;
}

/** The client a request authenticated as, if it got that far. */
export function callerIdOf(req: NodeRequest): string | undefined {
  return callers.get(req);
}
