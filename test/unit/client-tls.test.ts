import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { identityFromPem, identityFromPkcs12 } from "../../src/infra/client-tls.ts";

const pkiDir = inject("pkiDir");
const certFile = path.join(pkiDir, "clients", "lps-demo.pem");
const keyFile = path.join(pkiDir, "clients", "lps-demo-key.pem");

/** A PKCS#12 bundle of the test client, made by OpenSSL (an independent implementation). */
function pkcs12(passphrase: string): Buffer {
  const out = path.join(mkdtempSync(path.join(tmpdir(), "eproxy-p12-")), "client.p12");
  execFileSync("openssl", [
    "pkcs12",
    "-export",
    "-in",
    certFile,
    "-inkey",
    keyFile,
    "-out",
    out,
    "-passout",
    `pass:${passphrase}`,
  ]);
  return readFileSync(out);
}

describe("client TLS identities", () => {
  const pem = identityFromPem("lps-demo", readFileSync(certFile, "utf8"), readFileSync(keyFile, "utf8"));

  it("describes a PEM certificate: subject DN and the cnf x5t#S256 thumbprint", () => {
    expect(pem.subjectDn).toContain("CN=lps-demo");
    expect(pem.thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("describes a PKCS#12 bundle exactly like the same certificate in PEM", () => {
    const id = identityFromPkcs12("lps-demo", pkcs12("s3cret-pass"), "s3cret-pass");
    expect(id.subjectDn).toBe(pem.subjectDn);
    expect(id.thumbprint).toBe(pem.thumbprint);
    expect("pfx" in id.tls).toBe(true);
  });

  it("refuses a wrong passphrase at load time, without echoing it", () => {
    const bundle = pkcs12("right-pass");
    expect(() => identityFromPkcs12("lps-demo", bundle, "wrong-pass")).toThrow(/cannot be opened/);
    try {
      identityFromPkcs12("lps-demo", bundle, "wrong-pass");
    } catch (err) {
      expect((err as Error).message).not.toContain("wrong-pass");
    }
  });

  it("refuses a key that does not match the certificate", () => {
    const other = readFileSync(path.join(pkiDir, "clients", "lps-other-key.pem"), "utf8");
    expect(() => identityFromPem("lps-demo", readFileSync(certFile, "utf8"), other)).toThrow(
      /does not match/,
    );
  });
});
