import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { PSC_AUTH_METHOD_NAMES, PSC_AUTH_METHODS, requirementOf } from "../../src/auth/psc-client-auth.ts";
import { ConfigError, parseConfig } from "../../src/config.ts";
import { allDocText } from "../support/docs.ts";

/** Names in a text that look like OAuth client authentication methods (RFC 7591 §2 style). */
function methodNamesIn(text: string): string[] {
  const names = text.match(/\b[a-z]+(?:_[a-z0-9]+)+\b/g) ?? [];
  return [...new Set(names.filter((n) => /_(auth|jwt)$/.test(n) || /^client_secret_[a-z]+$/.test(n)))].sort();
}

function configWith(client: Record<string, unknown>) {
  return parseConfig(
    {
      server: { tls: { certFile: "server.pem", keyFile: "server-key.pem" } },
      psc: { discoveryUrl: "https://psc.example/.well-known/wallet-openid-configuration" },
      clients: [{ id: "lps-demo", certFile: "c.pem", keyFile: "k.pem", ...client }],
      teleservices: [],
    },
    {},
  );
}

describe("PSC client authentication methods: one table", () => {
  it("the configuration accepts every method of the table, and requires what each needs", () => {
    for (const m of PSC_AUTH_METHOD_NAMES) {
      const needsSecret = requirementOf(m) === "clientSecretFile";
      expect(
        configWith({ authMethod: m, ...(needsSecret ? { clientSecretFile: "s" } : {}) }).clients[0]
          ?.authMethod,
      ).toBe(m);
      if (needsSecret)
        expect(() => configWith({ authMethod: m })).toThrow(/clientSecretFile: required by authMethod/);
    }
    expect(configWith({}).clients[0]?.authMethod).toBe(PSC_AUTH_METHOD_NAMES[0]);
  });

  it("the configuration refuses a method outside the table, listing the table", () => {
    expect(() => configWith({ authMethod: "self_signed_tls_client_auth" })).toThrow(ConfigError);
    expect(() => configWith({ authMethod: "none" })).toThrow(
      new RegExp(PSC_AUTH_METHOD_NAMES.map((m) => `"${m}"`).join(".*")),
    );
  });

  it("the documentation and the example configuration name exactly the methods of the table", () => {
    const table = Object.keys(PSC_AUTH_METHODS).sort();
    expect(methodNamesIn(allDocText())).toEqual(table);
    expect(methodNamesIn(readFileSync("eproxy.example.yaml", "utf8"))).toEqual(table);
  });

  it("finds a method the documentation names but the table lacks (the check above can fail)", () => {
    expect(
      methodNamesIn(
        "with `tls_client_auth` or `self_signed_tls_client_auth`; client_secret_* and client_secret_jwt",
      ),
    ).toEqual(["client_secret_jwt", "self_signed_tls_client_auth", "tls_client_auth"]);
  });
});
