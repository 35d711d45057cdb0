/**
 * TLS identities of the configured clients (certificate + key, or PKCS#12 with a passphrase file),
 * read once at start.
 */
import { X509Certificate } from "node:crypto";
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

/** Reads the certificate of a client. */
export function loadClientIdentity(c: ClientConfig): ClientIdentity {
  if (c.pkcs12File) {
    const passphrase = c.pkcs12PassphraseFile ? readFileSync(c.pkcs12PassphraseFile, "utf8").trim() : "";
    return { clientId: c.id, tls: { pfx: readFileSync(c.pkcs12File), passphrase } };
  }
  const cert = readFileSync(c.certFile as string, "utf8");
  const key = readFileSync(c.keyFile as string, "utf8");
  const x = new X509Certificate(cert);
  return {
    clientId: c.id,
    tls: { cert, key },
    subjectDn: x.subject.split("\n").join(", "),
    thumbprint: Buffer.from(x.fingerprint256.replaceAll(":", ""), "hex").toString("base64url"),
  };
}
