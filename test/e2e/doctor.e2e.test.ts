/**
 * `eproxy doctor` run as a user would, against the sandbox's PSC and teleservice simulators, a real
 * Redis with a password and a real MongoDB-wire server: all green on a good deployment, and each
 * broken one named in the table with exit status 1.
 */
import "reflect-metadata"; // required by @peculiar/x509 (tsyringe) before it loads
import { randomBytes, webcrypto } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type PscSimulator, startPscSimulator } from "../../src/sandbox/psc-simulator.ts";
import { startTeleserviceSimulator, type TeleserviceSimulator } from "../../src/sandbox/teleservices.ts";
import { freePort, startCli } from "../support/cli.ts";
import { testPki } from "../support/server.ts";
import { startRedis, type TestServerProcess } from "../support/servers.ts";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
const REDIS_PASSWORD = randomBytes(12).toString("hex");

const redisBin = inject("redisBin");
const mongoUrl = inject("mongoUrl");
const servers = redisBin !== "" && mongoUrl !== "";
const pki = testPki();
const dir = mkdtempSync(path.join(tmpdir(), "eproxy-doctor-"));
let psc: PscSimulator;
let tele: TeleserviceSimulator;
let redis: TestServerProcess;

/** A client certificate for `cn` issued by the test CA, valid from `fromDays` to `toDays` from now. */
async function issueClientCert(
  cn: string,
  fromDays: number,
  toDays: number,
): Promise<{ certFile: string; keyFile: string }> {
  const caCert = new x509.X509Certificate(pki.ca);
  const caKey = await webcrypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(readFileSync(path.join(pki.dir, "ca-key.pem"), "utf8")),
    ALG,
    false,
    ["sign"],
  );
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString("hex"),
    subject: `CN=${cn}, O=eProxy tests, C=FR`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() + fromDays * DAY_MS),
    notAfter: new Date(Date.now() + toDays * DAY_MS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64");
  const certFile = path.join(dir, `${cn}.pem`);
  const keyFile = path.join(dir, `${cn}-key.pem`);
  writeFileSync(certFile, cert.toString("pem"));
  writeFileSync(
    keyFile,
    `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join("\n")}\n-----END PRIVATE KEY-----\n`,
  );
  return { certFile, keyFile };
}

interface Variant {
  discoveryUrl?: string;
  redisPassword?: string;
  client?: { id: string; certFile: string; keyFile: string };
}

function writeConfig(name: string, v: Variant = {}): string {
  const keyFile = path.join(dir, "encryption-k1");
  writeFileSync(keyFile, randomBytes(32).toString("base64"));
  const client = v.client ?? { id: "lps-demo", ...pki.client("lps-demo") };
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    JSON.stringify({
      server: {
        listenAddress: "127.0.0.1",
        port: 8443,
        tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCaFile: pki.caFile },
      },
      psc: { discoveryUrl: v.discoveryUrl ?? psc.discoveryUrl, caFile: pki.caFile },
      clients: [{ ...client, allowedServices: ["insi"] }],
      teleservices: [
        {
          name: "insi",
          upstreamUrl: `${tele.url}/insi`,
          caFile: pki.caFile,
          tokenExchange: { endpoint: tele.tokenEndpoint, scope: "insi" },
        },
      ],
      stores: {
        sessions: {
          kind: "redis",
          url: `redis://:${v.redisPassword ?? REDIS_PASSWORD}@127.0.0.1:${redis.port}/0`,
          keyPrefix: `doctor-${name}:`,
        },
        encryption: { keys: [{ id: "k1", file: keyFile }], activeKeyId: "k1" },
        mongodbUrl: `${mongoUrl}eproxy_doctor`,
      },
      stateDir: path.join(dir, "state"),
    }),
  );
  return file;
}

async function doctor(file: string, ...extra: string[]) {
  const p = startCli([
    "doctor",
    "--config",
    file,
    "--client-ca",
    pki.caFile,
    "--timeout-ms",
    "10000",
    ...extra,
  ]);
  const code = await p.exited;
  return { code, out: p.stdout(), err: p.stderr() };
}

/** The table row of a check: its verdict and detail. */
function row(out: string, check: string): { verdict: string; detail: string } {
  const line = out.split("\n").find((l) => l.startsWith(`${check} `));
  expect(line, `no row "${check}" in:\n${out}`).toBeDefined();
  const m = /^\S.*?\s{2,}(OK|WARN|FAIL|SKIP)\s+(.*)$/.exec(line as string);
  return { verdict: m?.[1] ?? "?", detail: m?.[2] ?? "" };
}

beforeAll(async () => {
  if (!servers) return;
  const tls = {
    cert: readFileSync(pki.serverCertFile, "utf8"),
    key: readFileSync(pki.serverKeyFile, "utf8"),
    ca: pki.ca,
  };
  psc = await startPscSimulator({
    port: 0,
    tls,
    clients: ["lps-demo", "lps-other", "lps-expired"].map((id) => ({
      id,
      redirectUris: ["https://localhost/cb"],
    })),
    autoApproveMs: null,
    introspectionClients: [{ id: "teleservice-as", secret: "sim-secret" }],
  });
  tele = await startTeleserviceSimulator({
    port: 0,
    tls,
    psc: {
      introspectionEndpoint: `${psc.issuer}/protocol/openid-connect/token/introspect`,
      clientId: "teleservice-as",
      clientSecret: "sim-secret",
      ca: pki.ca,
    },
  });
  redis = await startRedis(redisBin, path.join(dir, "redis"), ["--requirepass", REDIS_PASSWORD]);
});

afterAll(async () => {
  await psc?.close();
  await tele?.close();
  await redis?.stop();
});

describe.skipIf(!servers)("eproxy doctor", () => {
  it("a good deployment: every line OK, exit 0", async () => {
    const { code, out } = await doctor(writeConfig("good"));
    expect(out).not.toMatch(/\s(FAIL|WARN|SKIP)\s/);
    expect(code, out).toBe(0);
    for (const check of [
      "configuration",
      "configuration files",
      "state directory",
      "listener certificate expiry",
      "listener certificate name",
      "listener TLS settings",
      "client lps-demo chain",
      "client lps-demo key",
      "client lps-demo CN",
      "client lps-demo expiry",
      "PSC discovery",
      "clock skew with PSC",
      "PSC accepts client lps-demo",
      "teleservice insi token exchange",
      "teleservice insi upstream",
      "redis",
      "key ring",
      "mongodb",
    ]) {
      expect(row(out, check).verdict, check).toBe("OK");
    }
    expect(row(out, "client lps-demo chain").detail).toContain("chains to CN=eProxy Development CA");
    expect(row(out, "PSC accepts client lps-demo").detail).toContain(
      "authenticated the client (tls_client_auth)",
    );
    expect(row(out, "redis").detail).toContain("authenticated");
    expect(out).toMatch(/^18 checks: 18 ok, 0 warnings, 0 failed, 0 skipped$/m);
    // Never a password in the output.
    expect(out).not.toContain(REDIS_PASSWORD);
  });

  it("an expired client certificate", async () => {
    const client = { id: "lps-expired", ...(await issueClientCert("lps-expired", -400, -2)) };
    const { code, out } = await doctor(writeConfig("expired", { client }));
    expect(code, out).toBe(1);
    expect(row(out, "client lps-expired expiry")).toEqual({
      verdict: "FAIL",
      detail: expect.stringMatching(/^expired on \d{4}-\d{2}-\d{2}$/),
    });
    expect(row(out, "client lps-expired CN").verdict).toBe("OK");
  });

  it("a certificate expiring within 30 days is a warning, not a failure", async () => {
    const client = { id: "lps-expired", ...(await issueClientCert("lps-expired", -30, 10)) };
    const { code, out } = await doctor(writeConfig("soon", { client }));
    expect(row(out, "client lps-expired expiry").verdict).toBe("WARN");
    expect(row(out, "client lps-expired expiry").detail).toMatch(/\(\d+ days, less than 30: renew it\)/);
    expect(code, out).toBe(0);
  });

  it("a certificate whose CN is not the client id", async () => {
    const client = { id: "lps-demo", ...pki.client("lps-other") };
    const { code, out } = await doctor(writeConfig("cn", { client }));
    expect(code, out).toBe(1);
    expect(row(out, "client lps-demo CN")).toEqual({
      verdict: "FAIL",
      detail: "CN=lps-other but the client id is lps-demo: PSC identifies the client by its CN",
    });
  });

  it("an unreachable PSC", async () => {
    const port = await freePort();
    const discoveryUrl = `https://127.0.0.1:${port}/auth/realms/esante-wallet/.well-known/wallet-openid-configuration`;
    const { code, out } = await doctor(writeConfig("psc", { discoveryUrl }));
    expect(code, out).toBe(1);
    expect(row(out, "PSC discovery")).toEqual({
      verdict: "FAIL",
      detail: `127.0.0.1:${port}/auth/realms/esante-wallet/.well-known/wallet-openid-configuration: connection refused (ECONNREFUSED)`,
    });
    expect(row(out, "PSC accepts client lps-demo").verdict).toBe("SKIP");
    // The rest is still checked.
    expect(row(out, "redis").verdict).toBe("OK");
  });

  it("a wrong Redis password", async () => {
    const { code, out } = await doctor(writeConfig("redis", { redisPassword: "not-the-password" }));
    expect(code, out).toBe(1);
    expect(row(out, "redis").verdict).toBe("FAIL");
    expect(row(out, "redis").detail).toMatch(
      /^127\.0\.0\.1:\d+: authentication refused, wrong password or user \(WRONGPASS/,
    );
    expect(row(out, "key ring").verdict).toBe("SKIP");
    expect(out).not.toContain("not-the-password");
  });

  it("an invalid configuration exits 2 with the key named; --json gives the same verdicts", async () => {
    const bad = path.join(dir, "bad.yaml");
    writeFileSync(
      bad,
      "server: {tls: {certFile: a, keyFile: b}}\npsc: {discoveryUrl: 'http://psc.example/x'}\n",
    );
    const invalid = await doctor(bad);
    expect(invalid.code).toBe(2);
    expect(row(invalid.out, "configuration")).toEqual({
      verdict: "FAIL",
      detail: expect.stringContaining("psc.discoveryUrl: must be an https:// URL"),
    });
    const json = await doctor(writeConfig("json", { redisPassword: "wrong" }), "--json");
    expect(json.code).toBe(1);
    const report = JSON.parse(json.out) as { checks: { check: string; verdict: string }[]; failed: number };
    expect(report.checks.find((c) => c.check === "redis")?.verdict).toBe("fail");
    expect(report.failed).toBeGreaterThan(0);
  });
});
