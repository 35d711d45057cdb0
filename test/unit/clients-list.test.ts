/**
 * `eproxy clients list` without MongoDB lists the configuration's clients (the help and the docs
 * say "configuration and MongoDB"); the commands that change the registry still need it.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runClients } from "../../src/clients-cli.ts";

function configFile(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-clients-list-"));
  const file = path.join(dir, "eproxy.yaml");
  writeFileSync(
    file,
    [
      "server: { tls: { certFile: server.pem, keyFile: server-key.pem } }",
      "psc: { discoveryUrl: https://psc.example/.well-known/wallet-openid-configuration }",
      "teleservices: [{ name: insi, upstreamUrl: https://insi.example }]",
      "clients: [{ id: lps-cabinet, certFile: c.pem, keyFile: k.pem, allowedServices: [insi] }]",
    ].join("\n"),
  );
  return file;
}

describe("eproxy clients list without stores.mongodbUrl", () => {
  it("lists the configuration's clients and says MongoDB is not configured", async () => {
    let out = "";
    await runClients(["list", "--config", configFile()], { write: (s: string) => (out += s) });
    expect(out).toMatch(/^lps-cabinet\s+config\s+enabled\s+tls_client_auth/m);
    expect(out).toContain("no stores.mongodbUrl: the configuration's clients only");
  });

  it("--json gives the same rows", async () => {
    let out = "";
    await runClients(["list", "--config", configFile(), "--json"], { write: (s: string) => (out += s) });
    expect(JSON.parse(out)).toEqual([expect.objectContaining({ id: "lps-cabinet", origin: "config" })]);
  });

  it("the commands that change the registry still need MongoDB", async () => {
    await expect(
      runClients(["disable", "--config", configFile(), "--id", "lps-cabinet"], { write: () => 0 }),
    ).rejects.toThrow("the client registry needs stores.mongodbUrl");
  });
});
