/**
 * `eproxy traces verify` from the command line, against MongoDB (FerretDB): exit 0 on an untouched
 * range, exit 1 naming the trace ids around a deleted one, exit 2 without MongoDB in the
 * configuration.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { MongoClient } from "mongodb";
import { pino } from "pino";
import { describe, expect, inject, it } from "vitest";
import { createMongoTraceStore } from "../../src/infra/mongo-traces.ts";
import { createTraceWriter } from "../../src/trace/writer.ts";
import { startCli } from "../support/cli.ts";
import { stopAfterAll } from "../support/cli-cleanup.ts";
import { testPki } from "../support/server.ts";

const mongoUrl = inject("mongoUrl");
const started = stopAfterAll("SIGKILL");

async function run(args: string[]) {
  const p = startCli(args);
  started.push(p);
  const code = await p.exited;
  return { code, out: `${p.stdout()}${p.stderr()}` };
}

function configFile(dir: string, mongodbUrl?: string): string {
  const pki = testPki();
  const file = path.join(dir, "eproxy.yaml");
  writeFileSync(
    file,
    [
      "server:",
      `  tls: {certFile: ${pki.serverCertFile}, keyFile: ${pki.serverKeyFile}}`,
      "psc:",
      "  discoveryUrl: https://127.0.0.1:9/.well-known/wallet-openid-configuration",
      ...(mongodbUrl ? ["stores:", `  mongodbUrl: "${mongodbUrl}"`] : []),
      `stateDir: ${path.join(dir, "state")}`,
    ].join("\n"),
  );
  return file;
}

describe("eproxy traces verify", () => {
  it("exit 2 without MongoDB, and --help", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "eproxy-verify-cli-"));
    const r = await run(["traces", "verify", "--config", configFile(dir)]);
    expect(r.code).toBe(2);
    expect(r.out).toContain("stores.mongodbUrl");
    const help = await run(["traces", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: eproxy traces verify/);
  });

  it.skipIf(!mongoUrl)(
    "exit 0 on an untouched range, exit 1 with the ids around a deleted trace",
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "eproxy-verify-cli-"));
      const url = `${mongoUrl}verify_cli_${randomBytes(4).toString("hex")}`;
      const store = createMongoTraceStore(url, { retentionMs: 86_400_000 });
      const writer = createTraceWriter(store, pino({ level: "silent" }), {
        spoolFile: path.join(dir, "spool"),
        spoolMaxBytes: 1024 * 1024,
        flushMs: 60_000,
      });
      for (let i = 0; i < 12; i++) writer.record({ type: "SEND", clientId: "lps-demo", outcome: "OK" });
      await writer.close();
      const config = configFile(dir, url);
      const clean = await run(["traces", "verify", "--config", config]);
      expect(clean.out).toContain("clean");
      expect(clean.code).toBe(0);

      const client = await new MongoClient(url).connect();
      try {
        const traces = client.db().collection<{ _id: string; seq: number }>("traces");
        const docs = await traces.find({}).sort({ seq: 1 }).toArray();
        await traces.deleteOne({ _id: (docs[5] as { _id: string })._id });
        const found = await run([
          "traces",
          "verify",
          "--config",
          config,
          "--from",
          new Date(Date.now() - 3_600_000).toISOString(),
        ]);
        expect(found.code).toBe(1);
        expect(found.out).toContain(`between ${docs[4]?._id} and ${docs[6]?._id}`);
        const json = await run(["traces", "verify", "--config", config, "--json"]);
        expect(JSON.parse(json.out)).toMatchObject({ clean: false, problems: [{ kind: "missing", seq: 6 }] });
      } finally {
        await client.close();
      }
    },
    60_000,
  );
});
