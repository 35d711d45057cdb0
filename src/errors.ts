/**
 * The domain error of eProxy: a closed set of codes, a public message safe to show to callers,
 * and an optional cause that is logged but never sent.
 */

/**
 * Every failure eProxy reports: what it means to a caller (docs/reference/error-codes.md is generated
 * from this table), its HTTP status, its SOAP fault side and the French text end users see.
 */
export const ERROR_CODES = {
  INVALID_ARGUMENT: {
    meaning: "malformed request, bad national id, bad field",
    status: 400,
    side: "Sender",
    fr: "Requête invalide",
  },
  UNAUTHENTICATED: {
    meaning: "no or wrong API key / client certificate",
    status: 401,
    side: "Sender",
    fr: "Appelant non authentifié",
  },
  SESSION_INVALID: {
    meaning: "session token missing, unknown, expired or another client's",
    status: 401,
    side: "Sender",
    fr: "Session absente, inconnue ou expirée",
  },
  REAUTHENTICATION_REQUIRED: {
    meaning:
      "PSC refused to refresh, or eProxy lost the session (store incident): sign the professional in again",
    status: 401,
    side: "Sender",
    fr: "La session a expiré et ne peut pas être rafraîchie : nouvelle authentification requise",
  },
  PERMISSION_DENIED: {
    meaning:
      "teleservice not allowed for the client, `clientId` not the caller's, PSC `invalid_client`, PSC or an authorization server refusing the client's certificate in the TLS handshake",
    status: 403,
    side: "Sender",
    fr: "Accès refusé pour ce client",
  },
  AUTHENTICATION_DENIED: {
    meaning: "the professional refused the CIBA request",
    status: 403,
    side: "Sender",
    fr: "Le professionnel a refusé l'authentification",
  },
  AUTHENTICATION_EXPIRED: {
    meaning: "the professional did not answer in time",
    status: 408,
    side: "Sender",
    fr: "Le professionnel n'a pas répondu à temps",
  },
  NOT_FOUND: {
    meaning: "unknown route, teleservice, CIBA request or client",
    status: 404,
    side: "Sender",
    fr: "Ressource inconnue",
  },
  METHOD_NOT_ALLOWED: {
    meaning: "wrong HTTP method (with `Allow`)",
    status: 405,
    side: "Sender",
    fr: "Méthode non autorisée",
  },
  CONFLICT: {
    meaning: "conflicts with the current state",
    status: 409,
    side: "Sender",
    fr: "Conflit avec l'état courant",
  },
  PAYLOAD_TOO_LARGE: {
    meaning: "body or message over the configured limit",
    status: 413,
    side: "Sender",
    fr: "Corps de requête trop volumineux",
  },
  TOO_MANY_REQUESTS: {
    meaning: "pending CIBA cap, misuse limits (see misuse alerts); with `retryAfterSeconds`",
    status: 429,
    side: "Sender",
    fr: "Trop de requêtes en cours",
  },
  NOT_IMPLEMENTED: {
    meaning: "feature not available in this deployment",
    status: 501,
    side: "Receiver",
    fr: "Fonction non disponible",
  },
  PSC_UNAVAILABLE: {
    meaning: "Pro Santé Connect unreachable or failing",
    status: 503,
    side: "Receiver",
    fr: "Pro Santé Connect est indisponible",
  },
  STORE_UNAVAILABLE: {
    meaning: "session store (Redis) unreachable",
    status: 503,
    side: "Receiver",
    fr: "Stockage des sessions indisponible",
  },
  UPSTREAM_UNAVAILABLE: {
    meaning: "teleservice unreachable",
    status: 503,
    side: "Receiver",
    fr: "Téléservice injoignable",
  },
  TOKEN_EXCHANGE_UNAVAILABLE: {
    meaning:
      "the teleservice's authorization server (named) is down or unreachable; with `retryAfterSeconds`",
    status: 503,
    side: "Receiver",
    fr: "Serveur d'autorisation du téléservice injoignable (échange de jeton)",
  },
  UPSTREAM_TIMEOUT: {
    meaning: "teleservice too slow",
    status: 504,
    side: "Receiver",
    fr: "Le téléservice n'a pas répondu à temps",
  },
  UPSTREAM_BAD_RESPONSE: {
    meaning: "invalid teleservice answer or certificate refused",
    status: 502,
    side: "Receiver",
    fr: "Réponse invalide du téléservice ou certificat refusé",
  },
  UNAVAILABLE: {
    meaning: "eProxy cannot serve now (starting, draining, busy)",
    status: 503,
    side: "Receiver",
    fr: "Service momentanément indisponible",
  },
  INTERNAL: {
    meaning: "a bug: the cause is logged with the request id, never sent",
    status: 500,
    side: "Receiver",
    fr: "Erreur interne",
  },
} as const satisfies Record<
  string,
  { meaning: string; status: number; side: "Sender" | "Receiver"; fr: string }
>;

/** The `domain` of the google.rpc.ErrorInfo that carries an error code to Connect and gRPC clients. */
export const ERROR_DOMAIN = "eproxy.fr";

/** One of eProxy's closed error codes. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** The one error type domain code throws; `message` is public, `cause` stays private. */
export class EproxyError extends Error {
  /** Closed code that every boundary maps. */
  readonly code: ErrorCode;
  /** When the caller may try again (rendered as `Retry-After`). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    publicMessage: string,
    options?: { cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(publicMessage, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "EproxyError";
    this.code = code;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

/**
 * Turns anything thrown into an EproxyError; unknown errors become INTERNAL with a generic
 * message so that no library internals reach a caller.
 */
export function toEproxyError(err: unknown): EproxyError {
  if (err instanceof EproxyError) return err;
  return new EproxyError("INTERNAL", "internal error", { cause: err });
}

/** `Retry-After` header of an error, when it has one. */
export function retryAfterHeader(err: unknown): Record<string, string> {
  return err instanceof EproxyError && err.retryAfterSeconds !== undefined
    ? { "retry-after": String(Math.max(1, Math.ceil(err.retryAfterSeconds))) }
    : {};
}

/** HTTP status of an error code. */
export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CODES[code].status;
}
