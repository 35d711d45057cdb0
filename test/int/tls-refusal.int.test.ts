import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import https from "node:https";
import net, { type AddressInfo } from "node:net";
import tls from "node:tls";
import pino from "pino";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config.ts";
import { peerRefusedCertificate } from "../../src/infra/foreign-errors.ts";
import { createPscGateway } from "../../src/infra/psc-openid.ts";
import { createOpenidTokenExchange } from "../../src/infra/token-exchange-openid.ts";
import { freePort } from "../support/cli.ts";
import { testPki } from "../support/server.ts";

/**
 * A PSC that refuses eProxy's client certificate in the TLS handshake, as Keycloak does with a
 * certificate from a CA it does not trust. OpenSSL's s_server sends the TLS alert a Java or
 * OpenSSL server sends (Node's own TLS server would just close): it trusts only its own server
 * certificate as a CA, so every client certificate of the test PKI is "unknown CA".
 */
let server: ChildProcess | undefined;
let url: string;
/** PSC's discovery, public (no client certificate), pointing at the refusing endpoints. */
let discovery: https.Server;
let discoveryUrl: string;
const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

/** Starts OpenSSL's s_server on a free port with `verify` options; resolves once it accepts connections. */
async function startSServer(verify: string[]): Promise<{ child: ChildProcess; url: string }> {
  const pki = testPki();
  const port = await freePort();
  const child = spawn(
    "openssl",
    [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      pki.serverCertFile,
      "-key",
      pki.serverKeyFile,
      ...verify,
      "-Verify",
      "1",
      "-verify_return_error",
      "-www",
      "-quiet",
    ],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url: `https://localhost:${port}` };
}

/** A public PSC discovery document whose endpoints are at `endpoints` (the refusing server). */
async function startDiscovery(endpoints: string): Promise<{ server: https.Server; url: string }> {
  const pki = testPki();
  let url = "";
  const server = https.createServer(
    { cert: readFileSync(pki.serverCertFile), key: readFileSync(pki.serverKeyFile) },
    (_req, res) => {
      const issuer = url.replace("/.well-known/wallet-openid-configuration", "");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          issuer,
          token_endpoint: `${endpoints}/token`,
          backchannel_authentication_endpoint: `${endpoints}/ciba`,
          jwks_uri: `${endpoints}/certs`,
        }),
      );
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `https://localhost:${(server.address() as AddressInfo).port}/.well-known/wallet-openid-configuration`;
  return { server, url };
}

async function closeDiscovery(server: https.Server | undefined): Promise<void> {
  server?.closeAllConnections();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
}

beforeAll(async () => {
  if (!hasOpenssl) return;
  // It trusts only its own server certificate as a CA: every client certificate is "unknown CA".
  const started = await startSServer(["-CAfile", testPki().serverCertFile]);
  server = started.child;
  url = started.url;
  ({ server: discovery, url: discoveryUrl } = await startDiscovery(url));
});
afterAll(async () => {
  server?.kill();
  await closeDiscovery(discovery);
});

/** The PSC gateway of lps-demo against `discoveryUrl`, with its log lines. */
function pscGatewayFor(discoveryUrl: string) {
  const pki = testPki();
  const client = pki.client("lps-demo");
  const config = parseConfig(
    {
      server: { tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile } },
      psc: { discoveryUrl, caFile: pki.caFile },
      clients: [{ id: "lps-demo", certFile: client.certFile, keyFile: client.keyFile, allowedServices: [] }],
      teleservices: [],
    },
    {},
  );
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: "info" },
    { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  const identity = {
    clientId: "lps-demo",
    tls: { cert: readFileSync(client.certFile, "utf8"), key: readFileSync(client.keyFile, "utf8") },
  };
  const psc = createPscGateway(
    config,
    { get: (id) => config.clients.find((c) => c.id === id), identity: () => identity },
    log,
  );
  const startCiba = () =>
    psc
      .startCiba("lps-demo", {
        loginHint: "899700218896",
        bindingMessage: "12",
        channel: "MOBILE",
        scope: "openid scope_all",
        acrValues: "eidas1",
      })
      .catch((e: unknown) => e);
  return { psc, lines, startCiba };
}

describe.skipIf(!hasOpenssl)("PSC refusing the client certificate in the TLS handshake", () => {
  it("is PERMISSION_DENIED (a credentials problem), with a warn line naming PSC and the reason", async () => {
    const { psc, lines, startCiba } = pscGatewayFor(discoveryUrl);
    try {
      const err = await startCiba();
      expect(err).toMatchObject({ code: "PERMISSION_DENIED" });
      expect((err as Error).message).toMatch(/refused this client's certificate/);
      const line = lines.find((l) => String(l.msg).includes("refused eProxy's client certificate"));
      // The endpoint that refused is named (discovery is public, the backchannel endpoint is mTLS).
      expect(line).toMatchObject({ level: 40, peer: new URL(url).host });
      expect(String(line?.reason)).toMatch(/UNKNOWN_CA|CERTIFICATE_REQUIRED|BAD_CERTIFICATE|HANDSHAKE/);
    } finally {
      await psc.close();
    }
  });

  it("an authorization server refusing it is PERMISSION_DENIED too, naming the server", async () => {
    const pki = testPki();
    const client = pki.client("lps-demo");
    const tlsOptions = {
      cert: readFileSync(client.certFile, "utf8"),
      key: readFileSync(client.keyFile, "utf8"),
      ca: pki.ca,
    };
    const config = parseConfig(
      {
        server: { tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile } },
        psc: { discoveryUrl: "https://psc.example/.well-known/wallet-openid-configuration" },
        clients: [
          { id: "lps-demo", certFile: client.certFile, keyFile: client.keyFile, allowedServices: ["dmp"] },
        ],
        teleservices: [
          {
            name: "dmp",
            upstreamUrl: `${url}/dmp`,
            caFile: pki.caFile,
            tokenExchange: { endpoint: `${url}/as/token`, scope: "dmp" },
          },
        ],
      },
      {},
    );
    const lines: Array<Record<string, unknown>> = [];
    const log = pino(
      { level: "info" },
      { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
    );
    const agent = new Agent({ connect: tlsOptions });
    const exchange = createOpenidTokenExchange({
      dispatcherFor: () => agent,
      log,
      tlsFor: () => tlsOptions,
    });
    try {
      const err = await exchange
        .exchange({ clientId: "lps-demo", teleservice: config.teleservices[0] as never, subjectToken: "at" })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "PERMISSION_DENIED" });
      expect((err as Error).message).toMatch(
        /authorization server of dmp \(localhost:\d+\) refused this client's certificate/,
      );
      const line = lines.find((l) => String(l.msg).includes("refused eProxy's client certificate"));
      expect(line).toMatchObject({ level: 40, peer: new URL(url).host, service: "dmp" });
    } finally {
      await agent.close();
    }
  });
});

/**
 * Keycloak (Java) refuses a certificate it cannot validate with the `certificate_unknown` alert. The
 * server below trusts the test CA but demands a certificate policy the client certificate lacks, so
 * OpenSSL's verification fails with a reason of the "other" kind and sends that same alert — which
 * Node 24 (OpenSSL 3.5) spells `ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_UNKNOWN`, a spelling eProxy once
 * took for PSC being down (503 PSC_UNAVAILABLE).
 */
describe.skipIf(!hasOpenssl)("PSC refusing it with certificate_unknown, as Keycloak does", () => {
  let keycloakLike: ChildProcess | undefined;
  let refusingUrl: string;
  let publicDiscovery: https.Server | undefined;
  let publicDiscoveryUrl: string;
  beforeAll(async () => {
    const started = await startSServer([
      "-CAfile",
      testPki().caFile,
      "-explicit_policy",
      "-policy",
      "1.2.3.4",
    ]);
    keycloakLike = started.child;
    refusingUrl = started.url;
    ({ server: publicDiscovery, url: publicDiscoveryUrl } = await startDiscovery(refusingUrl));
  });
  afterAll(async () => {
    keycloakLike?.kill();
    await closeDiscovery(publicDiscovery);
  });

  it("reaches this Node as the SSL/TLS spelling of the alert (a new spelling must fail here first)", async () => {
    const pki = testPki();
    const client = pki.client("lps-demo");
    const { port } = new URL(refusingUrl);
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port: Number(port),
        servername: "localhost",
        ca: pki.ca,
        cert: readFileSync(client.certFile),
        key: readFileSync(client.keyFile),
      });
      socket.on("secureConnect", () => socket.write("GET / HTTP/1.0\r\n\r\n"));
      socket.on("data", () => {});
      socket.on("error", resolve);
    });
    expect(err.code).toMatch(/^ERR_SSL_(SSL\/TLS|SSLV3)_ALERT_CERTIFICATE_UNKNOWN$/);
    expect(peerRefusedCertificate(err)).toBe("CERTIFICATE_UNKNOWN");
  });

  it("is PERMISSION_DENIED with the warning naming PSC's endpoint, not 503 PSC_UNAVAILABLE", async () => {
    const { psc, lines, startCiba } = pscGatewayFor(publicDiscoveryUrl);
    try {
      const err = await startCiba();
      expect(err).toMatchObject({ code: "PERMISSION_DENIED" });
      expect((err as Error).message).toMatch(/refused this client's certificate/);
      const line = lines.find((l) => String(l.msg).includes("refused eProxy's client certificate"));
      expect(line).toMatchObject({
        level: 40,
        peer: new URL(refusingUrl).host,
        reason: "CERTIFICATE_UNKNOWN",
      });
    } finally {
      await psc.close();
    }
  });
});
