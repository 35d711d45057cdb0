/**
 * TLS identities of the configured clients (certificate + key, or PKCS#12 with a passphrase file),
 * read once at start.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ClientConfig } from "../config.ts";

/** The TLS material of one client, ready for an undici Agent or tls.connect. */
export interface ClientIdentity {
  /** Client id (certificate CN). */
  clientId: string;
  /** Options for tls.connect. */
  tls: { cert: string; key: string } | { pfx: Buffer; passphrase: string };
  /** Subject DN of the certificate, for traces (PEM only). */
  subjectDn?: string;
  /** SHA-256 thumbprint of the certificate (base64url), as in `cnf.x5t#S256`. */
  thumbprint?: string;
}

/** Finds enabled clients and their TLS identities (implemented by the client registry). */
export interface ClientLookup {
  get(id: string): ClientConfig | undefined;
  identity(id: string): ClientIdentity | undefined;
}

/** Reads the certificate of a client. */
export function loadClientIdentity(c: ClientConfig): ClientIdentity {
  if (c.pkcs12File) {
    const passphrase = c.pkcs12PassphraseFile ? readFileSync(c.pkcs12PassphraseFile, "utf8").trim() : "";
    return { clientId: c.id, tls: { pfx: readFileSync(c.pkcs12File), passphrase } };
  }
  return identityFromPem(
    c.id,
    readFileSync(c.certFile as string, "utf8"),
    readFileSync(c.keyFile as string, "utf8"),
  );
}

/** The identity of a PEM certificate chain and its private key (checked to belong together). */
export function identityFromPem(clientId: string, cert: string, key: string): ClientIdentity {
  const x = new X509Certificate(cert);
  if (!x.checkPrivateKey(createPrivateKey(key)))
    throw new Error("the private key does not match the certificate");
  return {
    clientId,
    tls: { cert, key },
    subjectDn: x.subject.split("\n").join(", "),
    thumbprint: Buffer.from(x.fingerprint256.replaceAll(":", ""), "hex").toString("base64url"),
  };
}
