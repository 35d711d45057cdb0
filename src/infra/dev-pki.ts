/**
 * Development PKI for the sandbox and the tests: a CA, a server certificate for localhost, and one
 * ORG-like client certificate (IGC-Santé "ORG AUTH_CLI" shape) per sandbox client. Built with
 * @peculiar/x509 on WebCrypto; nothing shells out to openssl. Never use it in production.
 */
import { webcrypto } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import "reflect-metadata"; // required by @peculiar/x509 (tsyringe) before it loads
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;

/** PEM material of one certificate. */
export interface PemPair {
  /** Certificate, PEM. */
  certPem: string;
  /** PKCS#8 private key, PEM. */
  keyPem: string;
  /** Path of the certificate file. */
  certFile: string;
  /** Path of the key file. */
  keyFile: string;
}

/** The files of a development PKI. */
export interface DevPki {
  /** Directory holding the files. */
  dir: string;
  /** CA certificate (trust anchor for server and client certificates). */
  ca: PemPair;
  /** Server certificate for localhost, 127.0.0.1 and ::1. */
  server: PemPair;
  /** Client certificates by client id (certificate CN). */
  clients: Record<string, PemPair>;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function serial(): string {
  // Positive serial: clear the top bit of 16 random bytes.
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0] ?? 0) & 0x7f;
  return Buffer.from(b).toString("hex");
}

function write(file: string, text: string, mode: number): void {
  writeFileSync(file, text, { mode });
}

async function issue(
  ca: { cert: x509.X509Certificate; key: CryptoKey },
  subject: string,
  extensions: x509.Extension[],
  validDays: number,
): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject,
    issuer: ca.cert.subject,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + validDays * DAY_MS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      ...extensions,
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyPem(keys.privateKey) };
}

function isUsable(certFile: string, keyFile: string): boolean {
  if (!existsSync(certFile) || !existsSync(keyFile)) return false;
  try {
    const cert = new x509.X509Certificate(readFileSync(certFile, "utf8"));
    // Regenerate a week before expiry so a sandbox never starts with a certificate about to die.
    return cert.notAfter.getTime() > Date.now() + 7 * DAY_MS;
  } catch {
    return false;
  }
}

function pair(dir: string, base: string): PemPair {
  const certFile = path.join(dir, `${base}.pem`);
  const keyFile = path.join(dir, `${base}-key.pem`);
  return {
    certFile,
    keyFile,
    certPem: existsSync(certFile) ? readFileSync(certFile, "utf8") : "",
    keyPem: existsSync(keyFile) ? readFileSync(keyFile, "utf8") : "",
  };
}

/**
 * Creates (or reuses, when present and valid) a development PKI in `dir`. Reuse keeps the CA
 * stable across sandbox runs so that a trusted `ca.pem` keeps working.
 */
export async function ensureDevPki(dir: string, clientIds: readonly string[]): Promise<DevPki> {
  mkdirSync(path.join(dir, "clients"), { recursive: true });
  let ca = pair(dir, "ca");
  let caKey: CryptoKey;
  let caCert: x509.X509Certificate;
  let fresh = false;
  if (isUsable(ca.certFile, ca.keyFile)) {
    caCert = new x509.X509Certificate(ca.certPem);
    const der = x509.PemConverter.decodeFirst(ca.keyPem);
    caKey = (await webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"])) as CryptoKey;
  } else {
    fresh = true;
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: "CN=eProxy Development CA, O=eProxy sandbox, C=FR",
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + 3650 * DAY_MS),
      signingAlgorithm: ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    caKey = keys.privateKey;
    write(ca.certFile, caCert.toString("pem"), 0o644);
    write(ca.keyFile, await keyPem(caKey), 0o600);
    ca = pair(dir, "ca");
  }
  const signer = { cert: caCert, key: caKey };

  let server = pair(dir, "server");
  if (fresh || !isUsable(server.certFile, server.keyFile)) {
    const s = await issue(
      signer,
      "CN=localhost, O=eProxy sandbox, C=FR",
      [
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([
          { type: "dns", value: "localhost" },
          { type: "ip", value: "127.0.0.1" },
          { type: "ip", value: "::1" },
        ]),
      ],
      825,
    );
    write(server.certFile, s.certPem, 0o644);
    write(server.keyFile, s.keyPem, 0o600);
    server = pair(dir, "server");
  }

  const clients: Record<string, PemPair> = {};
  for (const id of clientIds) {
    let c = pair(path.join(dir, "clients"), id);
    if (fresh || !isUsable(c.certFile, c.keyFile)) {
      const s = await issue(
        signer,
        `CN=${id}, OU=ORG AUTH_CLI, O=eProxy sandbox, C=FR`,
        [
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        ],
        825,
      );
      write(c.certFile, s.certPem, 0o644);
      write(c.keyFile, s.keyPem, 0o600);
      c = pair(path.join(dir, "clients"), id);
    }
    clients[id] = c;
  }
  return { dir, ca, server, clients };
}
