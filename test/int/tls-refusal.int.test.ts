import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import https from "node:https";
import net, { type AddressInfo } from "node:net";
import pino from "pino";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config.ts";
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
beforeAll(async () => {
  if (!hasOpenssl) return;
  const pki = testPki();
  const port = await freePort();
  server = spawn(
    "openssl",
    [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      pki.serverCertFile,
      "-key",
      pki.serverKeyFile,
      "-CAfile",
      pki.serverCertFile,
      "-Verify",
      "1",
      "-verify_return_error",
      "-www",
      "-quiet",
    ],
    { stdio: "ignore" },
  );
  url = `https://localhost:${port}`;
  discovery = https.createServer(
    { cert: readFileSync(pki.serverCertFile), key: readFileSync(pki.serverKeyFile) },
    (_req, res) => {
      const issuer = discoveryUrl.replace("/.well-known/wallet-openid-configuration", "");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          issuer,
          token_endpoint: `${url}/token`,
          backchannel_authentication_endpoint: `${url}/ciba`,
          jwks_uri: `${url}/certs`,
        }),
      );
    },
  );
  await new Promise<void>((r) => discovery.listen(0, "127.0.0.1", r));
  discoveryUrl = `https://localhost:${(discovery.address() as AddressInfo).port}/.well-known/wallet-openid-configuration`;
  // Ready when it accepts connections.
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
});
afterAll(async () => {
  server?.kill();
  discovery?.closeAllConnections();
  await new Promise((r) => (discovery ? discovery.close(r) : r(undefined)));
});

describe.skipIf(!hasOpenssl)("PSC refusing the client certificate in the TLS handshake", () => {
  it("is PERMISSION_DENIED (a credentials problem), with a warn line naming PSC and the reason", async () => {
    const pki = testPki();
    const client = pki.client("lps-demo");
    const config = parseConfig(
      {
        server: { tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile } },
        psc: { discoveryUrl, caFile: pki.caFile },
        clients: [
          { id: "lps-demo", certFile: client.certFile, keyFile: client.keyFile, allowedServices: [] },
        ],
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
    try {
      const err = await psc
        .startCiba("lps-demo", {
          loginHint: "899700218896",
          bindingMessage: "12",
          channel: "MOBILE",
          scope: "openid scope_all",
          acrValues: "eidas1",
        })
        .catch((e: unknown) => e);
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
