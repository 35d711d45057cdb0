/**
 * TLS identities of the configured clients (certificate + key, or PKCS#12 with a passphrase file),
 * read once at start.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { Socket } from "node:net";
import { createSecureContext, type PeerCertificate, TLSSocket } from "node:tls";
import type { ClientIdentity, IdentityReader } from "../auth/clients.ts";
import type { ClientConfig } from "../config.ts";

/** The client registry's certificate reader: files, PKCS#12 bundles and PEM given inline. */
export const fileIdentities: IdentityReader = {
  load: (c) => loadClientIdentity(c),
  fromPem: (clientId, certPem, keyPem) => identityFromPem(clientId, certPem, keyPem),
};

/** Reads the certificate of a client. */
export function loadClientIdentity(c: ClientConfig): ClientIdentity {
  if (c.pkcs12File) {
    const passphrase = c.pkcs12PassphraseFile ? readFileSync(c.pkcs12PassphraseFile, "utf8").trim() : "";
    return identityFromPkcs12(c.id, readFileSync(c.pkcs12File), passphrase);
  }
  return identityFromPem(
    c.id,
    readFileSync(c.certFile as string, "utf8"),
    readFileSync(c.keyFile as string, "utf8"),
  );
}

/**
 * The identity of a PKCS#12 bundle. Node reads PKCS#12 only into a TLS context; the certificate is
 * read back from a TLS socket built on that context (documented APIs, no PKCS#12 parser of our own),
 * which also proves the passphrase right at start rather than at the first upstream call.
 */
export function identityFromPkcs12(clientId: string, pfx: Buffer, passphrase: string): ClientIdentity {
  let raw: Buffer | undefined;
  try {
    const socket = new TLSSocket(new Socket(), {
      secureContext: createSecureContext({ pfx, passphrase }),
      isServer: true,
    });
    raw = (socket.getCertificate() as PeerCertificate | null)?.raw;
    socket.destroy();
  } catch {
    throw new Error(
      `the PKCS#12 file of client ${clientId} cannot be opened (wrong passphrase or not PKCS#12)`,
    );
  }
  if (!raw) throw new Error(`the PKCS#12 file of client ${clientId} holds no certificate`);
  return { clientId, tls: { pfx, passphrase }, ...describe(new X509Certificate(raw)) };
}

function describe(x: X509Certificate): { subjectDn: string; thumbprint: string } {
  return {
    subjectDn: x.subject.split("\n").join(", "),
    thumbprint: Buffer.from(x.fingerprint256.replaceAll(":", ""), "hex").toString("base64url"),
  };
}

/** The identity of a PEM certificate chain and its private key (checked to belong together). */
export function identityFromPem(clientId: string, cert: string, key: string): ClientIdentity {
  const x = new X509Certificate(cert);
  if (!x.checkPrivateKey(createPrivateKey(key)))
    throw new Error("the private key does not match the certificate");
  return { clientId, tls: { cert, key }, ...describe(x) };
}
