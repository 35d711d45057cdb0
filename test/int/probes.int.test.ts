/**
 * The doctor's TLS probe against real TLS servers on port 0: a handshake the server accepts, and a
 * client certificate the server refuses, with TLS 1.2 (reset during the handshake) and TLS 1.3 (the
 * handshake completes, then the server closes).
 */
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeNetError, tlsHandshake } from "../../src/infra/probes.ts";
import { testPki } from "../support/server.ts";

const pki = testPki();
const client = {
  cert: readFileSync(pki.client("lps-demo").certFile, "utf8"),
  key: readFileSync(pki.client("lps-demo").keyFile, "utf8"),
};
const servers: tls.Server[] = [];

/** A TLS server that requires a client certificate issued by `clientCa`. */
async function server(clientCa: string, maxVersion: tls.SecureVersion): Promise<number> {
  const s = tls.createServer(
    {
      cert: readFileSync(pki.serverCertFile),
      key: readFileSync(pki.serverKeyFile),
      requestCert: true,
      rejectUnauthorized: true,
      ca: clientCa,
      maxVersion,
    },
    // Accepted connections stay open until the client leaves, as a real server's would.
    (socket) => socket.on("error", () => {}),
  );
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as AddressInfo).port;
}

let accepting: number;
let refusing12: number;
let refusing13: number;
beforeAll(async () => {
  accepting = await server(pki.ca, "TLSv1.3");
  // The server's own certificate as the only client CA: it issued no client certificate.
  const otherCa = readFileSync(pki.serverCertFile, "utf8");
  refusing12 = await server(otherCa, "TLSv1.2");
  refusing13 = await server(otherCa, "TLSv1.3");
});
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

describe("tlsHandshake", () => {
  it("completes a handshake the server accepts and reports the server certificate", async () => {
    const r = await tlsHandshake({
      host: "127.0.0.1",
      port: accepting,
      client,
      ca: pki.ca,
      timeoutMs: 10_000,
    });
    expect(r.protocol).toBe("TLSv1.3");
    expect(r.serverSubject).toContain("CN=localhost");
    expect(r.serverValidTo.getTime()).toBeGreaterThan(Date.now());
  });

  it.each([
    [
      "TLS 1.2",
      () => refusing12,
      /connection reset during the TLS handshake: the server refused the client certificate/,
    ],
    [
      "TLS 1.3",
      () => refusing13,
      /(closed the connection after the TLS handshake|refused the TLS handshake)/,
    ],
  ])("names a client certificate the server refuses (%s)", async (_name, port, message) => {
    const err = await tlsHandshake({
      host: "127.0.0.1",
      port: port(),
      client,
      ca: pki.ca,
      timeoutMs: 10_000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeDefined();
    expect(describeNetError(err)).toMatch(message);
  });

  it("names a server certificate from an unknown CA and a closed port", async () => {
    const otherCa = readFileSync(pki.client("lps-other").certFile, "utf8");
    const unknown = await tlsHandshake({
      host: "127.0.0.1",
      port: accepting,
      client,
      ca: otherCa,
      timeoutMs: 10_000,
    }).catch((e: unknown) => e);
    expect(describeNetError(unknown)).toMatch(
      /^server certificate (not issued by the configured CA|chain ends at an untrusted root) \(/,
    );
    const closed = await tlsHandshake({ host: "127.0.0.1", port: 1, client, timeoutMs: 10_000 }).catch(
      (e: unknown) => e,
    );
    expect(describeNetError(closed)).toBe("connection refused (ECONNREFUSED)");
  });
});
