/**
 * PSC client authentication methods other than tls_client_auth, against the PSC simulator
 * (oidc-provider enforces the method each client is registered with).
 */
import { createPublicKey } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { type AuthEnv, PHARMACIST, startAuthEnv } from "../support/auth-env.ts";
import { testPki } from "../support/server.ts";

const IDS = ["lps-demo", "lps-other"] as const;

function secretFile(secret: string): string {
  const f = path.join(mkdtempSync(path.join(tmpdir(), "eproxy-secret-")), "secret");
  writeFileSync(f, `${secret}\n`, { mode: 0o600 });
  return f;
}

async function login(env: AuthEnv): Promise<{ status: CibaStatus; token: string }> {
  const auth = env.auth();
  const started = await auth.startCiba({ nationalId: PHARMACIST });
  let last: any;
  for await (const m of auth.watchCiba({ authReqId: started.authReqId })) last = m;
  return { status: last.status, token: last.session?.sessionToken ?? "" };
}

describe("PSC client authentication methods", () => {
  let env: AuthEnv | undefined;
  afterEach(async () => {
    await env?.close();
    env = undefined;
  });

  for (const method of ["client_secret_basic", "client_secret_post"] as const) {
    it(`${method}: signs in and logs out with the client secret`, async () => {
      env = await startAuthEnv({
        clientOverrides: { authMethod: method, clientSecretFile: secretFile("sim-client-secret") },
        psc: {
          clients: IDS.map((id) => ({
            id,
            redirectUris: ["https://localhost/cb"],
            authMethod: method,
            secret: "sim-client-secret",
          })),
        },
      });
      const { status, token } = await login(env);
      expect(status).toBe(CibaStatus.APPROVED);
      expect((await env.auth().getSession({ sessionToken: token })).session?.professional?.nationalId).toBe(
        PHARMACIST,
      );
      await env.auth().logout({ sessionToken: token });
      expect(env.psc.stats.endSessions).toBe(1);
    });
  }

  it("a wrong client secret is refused by PSC and reported without the secret", async () => {
    env = await startAuthEnv({
      clientOverrides: { authMethod: "client_secret_basic", clientSecretFile: secretFile("not-the-secret") },
      psc: {
        clients: IDS.map((id) => ({
          id,
          redirectUris: ["https://localhost/cb"],
          authMethod: "client_secret_basic",
          secret: "sim-secret",
        })),
      },
    });
    const err = await env
      .auth()
      .startCiba({ nationalId: PHARMACIST })
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(err).toBeDefined();
    expect(String(err)).toMatch(/permission_denied.*invalid_client/);
    expect(err?.message).not.toContain("not-the-secret");
    expect(env.psc.stats.cibaRequests).toBe(0);
  });

  it("private_key_jwt: signs its assertions with the certificate's key, registered at PSC as a JWK", async () => {
    const pki = testPki();
    const jwks = (id: string) => ({
      keys: [
        {
          ...createPublicKey(readFileSync(pki.client(id).certFile, "utf8")).export({ format: "jwk" }),
          kid: "sig-1",
          use: "sig",
          alg: "ES256",
        },
      ],
    });
    env = await startAuthEnv({
      clientOverrides: { authMethod: "private_key_jwt", signingKeyId: "sig-1" },
      psc: {
        clients: IDS.map((id) => ({
          id,
          redirectUris: ["https://localhost/cb"],
          authMethod: "private_key_jwt",
          jwks: jwks(id),
        })),
      },
    });
    const { status, token } = await login(env);
    expect(status).toBe(CibaStatus.APPROVED);
    await env.auth().logout({ sessionToken: token });
  });
});
