/**
 * The ways a client authenticates to Pro Santé Connect's token endpoint: the one table the
 * configuration schema, its cross-field checks, the PSC gateway, the `eproxy clients` CLI and the
 * documentation (checked by a test) are built from. Adding a method starts here; TypeScript then
 * points at the gateway's table, which must say how to build it.
 */

/** What a client authentication method is and what it needs. */
export interface PscAuthMethodInfo {
  /** One line for `--help` and the documentation. */
  summary: string;
  /** The configuration field that must be set (besides the certificate every client has). */
  requires?: "clientSecretFile";
  /**
   * The client proves itself with its TLS certificate (RFC 8705): PSC's mTLS endpoint aliases are
   * used and its access tokens are bound to the certificate.
   */
  mtls: boolean;
}

/** Every method eProxy supports, the default first. */
export const PSC_AUTH_METHODS = {
  tls_client_auth: { summary: "the client certificate (RFC 8705), the default", mtls: true },
  client_secret_basic: {
    summary: "a shared secret, in HTTP Basic",
    requires: "clientSecretFile",
    mtls: false,
  },
  client_secret_post: {
    summary: "a shared secret, in the form body",
    requires: "clientSecretFile",
    mtls: false,
  },
  private_key_jwt: { summary: "a JWT signed by the signing key or the certificate's key", mtls: false },
} as const satisfies Record<string, PscAuthMethodInfo>;

/** A PSC client authentication method. */
export type PscAuthMethod = keyof typeof PSC_AUTH_METHODS;

/** The method names, the default first (a non-empty tuple, as `z.enum` wants it). */
export const PSC_AUTH_METHOD_NAMES = Object.keys(PSC_AUTH_METHODS) as [PscAuthMethod, ...PscAuthMethod[]];

/** The method a client gets when none is configured. */
export const DEFAULT_PSC_AUTH_METHOD: PscAuthMethod = "tls_client_auth";

/** True for a name of the table (narrows a CLI or stored string). */
export function isPscAuthMethod(name: string): name is PscAuthMethod {
  return Object.hasOwn(PSC_AUTH_METHODS, name);
}

/** What the method needs, if anything (typed so that callers can name the field in messages). */
export function requirementOf(method: PscAuthMethod): PscAuthMethodInfo["requires"] {
  return (PSC_AUTH_METHODS[method] as PscAuthMethodInfo).requires;
}
