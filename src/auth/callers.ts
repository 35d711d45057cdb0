/**
 * Authentication of the calling backend: an API key (`Authorization: Bearer epk_…` or
 * `x-eproxy-api-key`) or a client certificate verified against the configured CA (CN = client id).
 */
import type { ClientConfig } from "../config.ts";
import { EproxyError } from "../errors.ts";
import type { ClientRegistry } from "./clients.ts";

/** Credentials found on a request. */
export interface CallerCredentials {
  /** API key, if one was presented. */
  apiKey?: string;
  /** CN of a client certificate that the TLS layer verified. */
  verifiedCertCn?: string;
}

/** API keys start with this prefix (see `eproxy api-key`). */
export const API_KEY_PREFIX = "epk_";

/** The part of the client registry that authenticates callers. */
export type ClientDirectory = Pick<ClientRegistry, "get" | "byApiKey">;

/** Returns the client the credentials authenticate, or throws UNAUTHENTICATED. */
export function authenticateCaller(clients: ClientDirectory, creds: CallerCredentials): ClientConfig {
  if (creds.apiKey) {
    // Every client is checked, so the time taken does not depend on which one matches.
    const found = clients.byApiKey(creds.apiKey);
    if (found) return found;
    throw new EproxyError("UNAUTHENTICATED", "invalid API key");
  }
  if (creds.verifiedCertCn) {
    const c = clients.get(creds.verifiedCertCn);
    if (c) return c;
    throw new EproxyError("UNAUTHENTICATED", "client certificate does not belong to a configured client");
  }
  throw new EproxyError("UNAUTHENTICATED", "an API key or a client certificate is required");
}

/** Refuses a request whose clientId names another client than the caller. */
export function assertSameClient(caller: ClientConfig, clientId: string | undefined): void {
  if (clientId && clientId !== caller.id) {
    throw new EproxyError("PERMISSION_DENIED", "clientId does not match the authenticated caller");
  }
}
