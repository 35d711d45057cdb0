/**
 * The client registry on a real MongoDB-wire server (FerretDB): `eproxy clients` run as a real
 * process against the same database a running eProxy reads, and the effects seen through gRPC/REST.
 */

import { mkdtempSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { MongoClient } from "mongodb";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type ClientSource, createClientRegistry, type StoredClient } from "../../src/auth/clients.ts";
import { parseConfig } from "../../src/config.ts";
import { fileIdentities } from "../../src/infra/client-tls.ts";
import { createMongoClientSource } from "../../src/infra/mongo-clients.ts";
import { ACTIONS, insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import { type AuthEnv, cibaLogin, NURSE, PHARMACIST, startAuthEnv } from "../support/auth-env.ts";
import { startCli } from "../support/cli.ts";
import { expectDocumentedAnswer } from "../support/openapi.ts";
import { baseRawConfig, testPki } from "../support/server.ts";

const mongoUrl = inject("mongoUrl");
const SOAP12 = `application/soap+xml; charset=utf-8; action="${ACTIONS.insiSearch}"`;

function stored(id: string, over: Partial<StoredClient> = {}): StoredClient {
  const now = Date.now();
  return {
    id,
    ...testPki().client("lps-registered"),
    authMethod: "tls_client_auth",
    apiKeyHashes: [],
    redirectUris: [],
    allowedServices: [],
    exposePscTokens: false,
    maxPendingCiba: 20,
    disabled: false,
    createdAt: now,
    updatedAt: now,
    ...over,
  };
}

describe.skipIf(!mongoUrl)("client registry on MongoDB", () => {
  describe("ClientSource contract", () => {
    let source: ClientSource;
    const url = `${mongoUrl}clients_${Date.now()}`;
    beforeAll(() => {
      source = createMongoClientSource(url);
    });
    afterAll(() => source.close());

    it("inserts once, reads back, updates, lists in id order; invalid documents are skipped", async () => {
      expect(await source.insert(stored("b-client"))).toBe(true);
      expect(await source.insert(stored("b-client"))).toBe(false);
      expect(await source.insert(stored("a-client", { allowedServices: ["insi"] }))).toBe(true);
      expect((await source.get("a-client"))?.allowedServices).toEqual(["insi"]);
      expect(await source.update("b-client", { disabled: true })).toBe(true);
      expect(await source.update("nobody", { disabled: true })).toBe(false);
      expect((await source.get("b-client"))?.disabled).toBe(true);
      // A hand-edited document the configuration schema would refuse.
      const raw = new MongoClient(url);
      try {
        await raw
          .db()
          .collection("clients")
          .insertOne({ _id: "c-bad", authMethod: "magic", apiKeyHashes: ["plain-key"] } as never);
      } finally {
        await raw.close();
      }
      expect((await source.list()).map((c) => c.id)).toEqual(["a-client", "b-client"]);
    });

    it("config wins on conflict; disabled clients are not served", async () => {
      const log = pino({ level: "silent" });
      const config = parseConfig(baseRawConfig(), {});
      expect(await source.insert(stored("lps-demo", { allowedServices: ["stolen"] }))).toBe(true);
      const registry = await createClientRegistry({ config, log, source, identities: fileIdentities });
      try {
        expect(registry.get("lps-demo")?.allowedServices).toEqual([]);
        expect(registry.list().find((c) => c.client.id === "lps-demo")?.origin).toBe("config");
        expect(registry.get("a-client")?.allowedServices).toEqual(["insi"]);
        expect(registry.get("b-client")).toBeUndefined();
        expect(registry.identity("a-client")?.subjectDn).toContain("CN=lps-registered");
      } finally {
        registry.close();
      }
    });
  });

  describe("eproxy clients, end to end", () => {
    let env: AuthEnv;
    let configFile: string;
    let dbUrl: string;

    async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
      const p = startCli(["clients", ...args, "--config", configFile], env.secretEnv);
      const code = await p.exited;
      return { code, out: p.stdout(), err: p.stderr() };
    }

    async function login(apiKey: string, nationalId: string): Promise<string> {
      return cibaLogin(env.authKey(apiKey), nationalId);
    }

    function relay(
      apiKey: string,
      session: string,
      service = "insi",
    ): Promise<{ status: number; body: string }> {
      return new Promise((resolve, reject) => {
        const req = https.request(
          `${env.url}/send/${service}`,
          {
            method: "POST",
            ca: env.ca,
            agent: false,
            headers: {
              "x-eproxy-api-key": apiKey,
              authorization: `Bearer ${session}`,
              "content-type": SOAP12,
            },
          },
          (res) => {
            let body = "";
            res.on("data", (c: Buffer) => {
              body += c;
            });
            res.on("end", () => {
              const answer = { status: res.statusCode ?? 0, headers: res.headers, body };
              try {
                expectDocumentedAnswer("POST", `/send/${service}`, answer);
              } catch (err) {
                reject(err);
                return;
              }
              resolve(answer);
            });
          },
        );
        req.on("error", reject);
        req.end(insiSearchRequest("MARTIN"));
      });
    }

    beforeAll(async () => {
      env = await startAuthEnv({
        mongoUrl,
        extraPscClients: ["lps-registered"],
        stores: { clientsRefreshSeconds: 1 },
      });
      dbUrl = env.deps.config.stores.mongodbUrl as string;
      configFile = path.join(mkdtempSync(path.join(tmpdir(), "eproxy-clients-")), "eproxy.yaml");
      writeFileSync(configFile, JSON.stringify(env.deps.config));
    });
    afterAll(async () => {
      await env?.close();
    });

    it("add (certificate stored, key sealed) → the client authenticates, signs in and relays with its own certificate", async () => {
      const pki = testPki().client("lps-registered");
      const added = await cli(
        "add",
        "--id",
        "lps-registered",
        "--cert-file",
        pki.certFile,
        "--key-file",
        pki.keyFile,
        "--store-cert",
        "--service",
        "insi",
      );
      expect(added.err).toBe("");
      expect(added.code).toBe(0);
      const apiKey = /API key[^:]*: (epk_[A-Za-z0-9_-]{43})/.exec(added.out)?.[1] as string;
      expect(apiKey).toBeDefined();

      // Stored as a hash, the private key sealed: no secret in clear in MongoDB.
      const raw = new MongoClient(dbUrl);
      try {
        const doc = await raw
          .db()
          .collection("clients")
          .findOne({ _id: "lps-registered" as never });
        const text = JSON.stringify(doc);
        expect(text).not.toContain(apiKey);
        expect(text).not.toContain("PRIVATE KEY");
        expect(doc?.apiKeyHashes).toHaveLength(1);
        expect(doc?.certPem).toContain("BEGIN CERTIFICATE");
      } finally {
        await raw.close();
      }

      // Picked up by the periodic reload (1 s here), no restart.
      await expect
        .poll(() => env.deps.clients.get("lps-registered")?.id, { timeout: 5_000 })
        .toBe("lps-registered");
      const session = await login(apiKey, NURSE);
      const res = await relay(apiKey, session);
      expect(res.body).not.toContain("Fault");
      expect(res.status).toBe(200);
      expect(res.body).toContain("Envelope");
      // Not allowed beyond its services.
      expect((await relay(apiKey, session, "dmp")).status).toBe(403);

      // list: both origins, no secrets.
      const listed = await cli("list");
      expect(listed.code).toBe(0);
      expect(listed.out).toMatch(/lps-registered\s+mongodb\s+enabled/);
      expect(listed.out).toMatch(/lps-demo\s+config\s+enabled/);
      expect(listed.out).not.toMatch(/epk_|sha256:/);

      // rotate-key: the old key stops working, the new one works.
      const rotated = await cli("rotate-key", "--id", "lps-registered");
      expect(rotated.code).toBe(0);
      const newKey = /(epk_[A-Za-z0-9_-]{43})/.exec(rotated.out)?.[1] as string;
      expect(newKey).not.toBe(apiKey);
      await expect
        .poll(
          () =>
            env
              .authKey(apiKey)
              .getSession({ sessionToken: session })
              .then(
                () => "ok",
                (e: unknown) => ConnectError.from(e).code,
              ),
          { timeout: 5_000 },
        )
        .toBe(Code.Unauthenticated);
      expect(
        (await env.authKey(newKey).getSession({ sessionToken: session })).session?.professional?.nationalId,
      ).toBe(NURSE);

      // disable: nothing authenticates, the session cannot be used.
      expect((await cli("disable", "--id", "lps-registered")).code).toBe(0);
      await expect.poll(() => relay(newKey, session).then((r) => r.status), { timeout: 5_000 }).toBe(401);
      await expect(env.authKey(newKey).startCiba({ nationalId: PHARMACIST })).rejects.toMatchObject({
        code: Code.Unauthenticated,
      });
    });

    it("refuses what would be ambiguous or unusable, with a clear message and exit code 2", async () => {
      const pki = testPki().client("lps-demo");
      const dup = await cli(
        "add",
        "--id",
        "lps-demo",
        "--cert-file",
        pki.certFile,
        "--key-file",
        pki.keyFile,
      );
      expect(dup.code).toBe(2);
      expect(dup.err).toContain("defined in the configuration file");
      const cn = await cli(
        "add",
        "--id",
        "someone-else",
        "--cert-file",
        pki.certFile,
        "--key-file",
        pki.keyFile,
      );
      expect(cn.code).toBe(2);
      expect(cn.err).toContain("CN (lps-demo) must be the client id someone-else");
      const service = await cli(
        "add",
        "--id",
        "lps-demo-2",
        "--cert-file",
        pki.certFile,
        "--key-file",
        pki.keyFile,
        "--service",
        "nope",
      );
      expect(service.code).toBe(2);
      expect(service.err).toContain("--service nope: no such teleservice");
      const unreadable = await cli(
        "add",
        "--id",
        "lps-x",
        "--cert-file",
        "/nonexistent.pem",
        "--key-file",
        pki.keyFile,
      );
      expect(unreadable.code).toBe(2);
      expect(unreadable.err).toContain("--cert-file /nonexistent.pem: cannot be read");
      const unknown = await cli("frob");
      expect(unknown.code).toBe(2);
      expect(unknown.err).toContain("unknown clients command: frob");
      const missing = await cli("disable", "--id", "nobody");
      expect(missing.code).toBe(2);
      expect(missing.err).toContain("no client nobody in MongoDB");
      for (const r of [dup, cn, service, unreadable, unknown, missing]) expect(r.err).not.toMatch(/\n\s+at /);
    });
  });
});
