/**
 * `npm run bench:trace-durability`: the trace record's durability promise, measured. eProxy (a
 * separate `eproxy serve` process, traces in MongoDB — FerretDB here) relays a steady INSi load from
 * the sandbox simulators; then it is stopped — `kill -9` (a crash), or SIGTERM (a planned stop) —
 * under that load, started again on the same spool, and every relay answered 200 is looked up among
 * the SEND traces (by its `x-request-id`). Reports, per stop: relays answered, traces lost, how long
 * before the stop the oldest lost one was answered, and `eproxy traces verify`'s verdict on the range
 * (a chain that ends at a crash must not be a finding).
 *
 * Environment: DURABILITY_RUNS (kill -9 rounds, default 3), DURABILITY_LOAD_MS (load before each stop,
 * default 4000), DURABILITY_CONCURRENCY (default 8), MONGO_URL (default: a FerretDB started here).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { MongoClient } from "mongodb";
import { createApiKey } from "../src/auth/api-keys.ts";
import { ensureDevPki } from "../src/infra/dev-pki.ts";
import { startPscSimulator } from "../src/sandbox/psc-simulator.ts";
import { insiSearchRequest } from "../src/sandbox/soap-samples.ts";
import { startTeleserviceSimulator } from "../src/sandbox/teleservices.ts";
import { freePort } from "../test/support/cli.ts";
import { benchConfig } from "./bench-config.ts";

/** One stop under load, and what the trace record kept of it. */
export interface DurabilityRound {
  stop: "SIGKILL" | "SIGTERM";
  /** Relays answered 200 before the stop. */
  answered: number;
  /** Of those, the ones without a SEND trace after the restart. */
  lost: number;
  /** How long before the stop the oldest lost relay was answered (0 when none was lost). */
  lostWindowMs: number;
  /** Relays per second during the load. */
  rate: number;
  /** eProxy's CPU time (user + system) per relay answered during the load, in ms. */
  cpuPerRelayMs: number;
  /** Exit status of `eproxy traces verify` over the run's range (0: clean). */
  verifyExit: number | null;
  verifyOutput: string;
}

/** Options of a run. */
export interface DurabilityOptions {
  /** MongoDB-wire server, e.g. `mongodb://127.0.0.1:27017/` (a fresh database is used). */
  mongoUrl: string;
  /** The stops, in order. */
  stops: ReadonlyArray<"SIGKILL" | "SIGTERM">;
  loadMs: number;
  concurrency: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

const EPROXY = path.resolve("bin/eproxy.js");

/** CPU time of a process so far (user + system), in ms, from /proc. */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

function startEproxy(config: string): ChildProcess {
  return spawn(process.execPath, [EPROXY, "serve", "--config", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
}

async function waitHealthy(port: number, ca: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      https
        .get(`https://localhost:${port}/healthz`, { ca, agent: false }, (r) => {
          r.resume();
          resolve(r.statusCode === 200);
        })
        .on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error("eProxy did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
}

function post(
  url: string,
  agent: https.Agent,
  headers: Record<string, string>,
  body: Buffer,
): Promise<{ status: number; text: string; requestId: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: "POST", agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          text: Buffer.concat(chunks).toString(),
          requestId: String(res.headers["x-request-id"] ?? ""),
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Runs the stops and returns one round each. */
export async function runDurability(opts: DurabilityOptions): Promise<DurabilityRound[]> {
  const log = opts.log ?? (() => {});
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-durability-"));
  const pki = await ensureDevPki(path.join(dir, "pki"), ["lps-bench"]);
  const tls = { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem };
  const port = await freePort();
  const psc = await startPscSimulator({
    port: 0,
    tls,
    clients: [
      { id: "lps-bench", redirectUris: [`https://localhost:${port}/oauth2/codeflow/lps-bench/callback`] },
    ],
    autoApproveMs: 50,
    cibaIntervalSeconds: 1,
    introspectionClients: [{ id: "bench-as", secret: "bench-secret" }],
  });
  const tele = await startTeleserviceSimulator({
    port: 0,
    tls,
    psc: {
      introspectionEndpoint: `${psc.issuer}/protocol/openid-connect/token/introspect`,
      clientId: "bench-as",
      clientSecret: "bench-secret",
      ca: tls.ca,
    },
  });
  const key = createApiKey();
  const client = pki.clients["lps-bench"];
  if (!client) throw new Error("no client certificate");
  const database = `durability_${Date.now()}`;
  const mongodbUrl = `${opts.mongoUrl.replace(/\/?$/, "/")}${database}`;
  const spoolFile = path.join(dir, "traces.spool");
  const config = path.join(dir, "eproxy.yaml");
  writeFileSync(
    config,
    JSON.stringify(
      benchConfig({
        port,
        pki,
        client,
        apiKeyHash: key.hash,
        pscDiscoveryUrl: psc.discoveryUrl,
        tele,
        dmpMaxBodyBytes: 1024 * 1024,
        relaysPerSessionMax: 1_000_000,
        logLevel: "warn",
        server: { workers: 1, shutdownGraceMs: 5_000 },
        extra: {
          stores: { mongodbUrl },
          traces: { spoolFile, file: path.join(dir, "traces.jsonl") },
          stateDir: path.join(dir, "state"),
        },
      }),
    ),
  );
  const mongo = await new MongoClient(mongodbUrl).connect();
  const traces = mongo.db().collection<{ _id: string; requestId?: string; type: string }>("traces");
  const rounds: DurabilityRound[] = [];
  const body = Buffer.from(insiSearchRequest("DURABILITY"));
  let child = startEproxy(config);
  try {
    for (const stop of opts.stops) {
      await waitHealthy(port, tls.ca);
      const agent = new https.Agent({ ca: tls.ca, keepAlive: true, maxSockets: opts.concurrency });
      const login = await post(
        `https://localhost:${port}/oauth2/ciba`,
        agent,
        { "x-eproxy-api-key": key.key, "content-type": "application/json" },
        Buffer.from(JSON.stringify({ nationalId: "899700218896", channel: "MOBILE" })),
      );
      const session = JSON.parse(login.text).session as { sessionToken: string } | undefined;
      if (!session) throw new Error(`CIBA login failed: ${login.status} ${login.text}`);
      const headers = {
        "x-eproxy-api-key": key.key,
        authorization: `Bearer ${session.sessionToken}`,
        "content-type": "application/soap+xml; charset=utf-8",
      };
      const answered = new Map<string, number>();
      let stopAt = 0;
      let running = true;
      const t0 = Date.now();
      const workers = Array.from({ length: opts.concurrency }, async () => {
        while (running) {
          try {
            const r = await post(`https://localhost:${port}/send/insi`, agent, headers, body);
            if (r.status === 200 && r.requestId) answered.set(r.requestId, Date.now());
            else if (stopAt) return;
          } catch {
            // The stop: connections refused or reset.
            if (stopAt) return;
          }
        }
      });
      // CPU per relay over the steady part (after the first half second: JIT, pools).
      await new Promise((r) => setTimeout(r, 500));
      const [cpu0, n0] = [cpuMs(child.pid), answered.size];
      await new Promise((r) => setTimeout(r, Math.max(0, opts.loadMs - 500)));
      const cpuPerRelayMs = (cpuMs(child.pid) - cpu0) / Math.max(1, answered.size - n0);
      const rate = (answered.size / (Date.now() - t0)) * 1000;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      stopAt = Date.now();
      child.kill(stop);
      await exited;
      running = false;
      await Promise.all(workers);
      agent.destroy();
      log(`${stop}: ${answered.size} relays answered (${rate.toFixed(0)}/s), eProxy stopped`);

      // The next process replays the spool (a crash between spooling and inserting included).
      child = startEproxy(config);
      await waitHealthy(port, tls.ca);
      const settleUntil = Date.now() + 15_000;
      let lost: string[] = [];
      for (;;) {
        const ids = [...answered.keys()];
        const found = new Set<string>();
        for (let i = 0; i < ids.length; i += 1000) {
          const docs = await traces
            .find(
              { type: "SEND", requestId: { $in: ids.slice(i, i + 1000) } },
              { projection: { requestId: 1 } },
            )
            .toArray();
          for (const d of docs) if (d.requestId) found.add(d.requestId);
        }
        lost = ids.filter((id) => !found.has(id));
        let spooled = 0;
        try {
          spooled = statSync(spoolFile).size;
        } catch {}
        if ((lost.length === 0 && spooled === 0) || Date.now() > settleUntil) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const oldestLost = lost.length ? Math.min(...lost.map((id) => answered.get(id) as number)) : stopAt;
      const verify = spawnSync(
        process.execPath,
        [EPROXY, "traces", "verify", "--config", config, "--from", new Date(t0 - 60_000).toISOString()],
        { encoding: "utf8" },
      );
      const round: DurabilityRound = {
        stop,
        answered: answered.size,
        lost: lost.length,
        lostWindowMs: stopAt - oldestLost,
        rate,
        cpuPerRelayMs,
        verifyExit: verify.status,
        verifyOutput: `${verify.stdout}${verify.stderr}`,
      };
      rounds.push(round);
      log(
        `${stop}: ${round.lost} of ${round.answered} traces lost (oldest ${round.lostWindowMs} ms before the stop); traces verify exit ${round.verifyExit}`,
      );
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      await exited;
    }
    await mongo
      .db()
      .dropDatabase()
      .catch(() => undefined);
    await mongo.close();
    await psc.close();
    await tele.close();
  }
  return rounds;
}

async function main(): Promise<void> {
  const runs = Number(process.env.DURABILITY_RUNS ?? 3);
  const loadMs = Number(process.env.DURABILITY_LOAD_MS ?? 4_000);
  const concurrency = Number(process.env.DURABILITY_CONCURRENCY ?? 8);
  let mongoUrl = process.env.MONGO_URL;
  let stopFerret: (() => Promise<void>) | undefined;
  if (!mongoUrl) {
    const { ferretBinary, startFerret } = await import("../test/support/servers.ts");
    const bin = ferretBinary();
    if (!bin) throw new Error("FerretDB not found: run bash .ci/install-ferretdb.sh, or set MONGO_URL");
    const ferret = await startFerret(bin, mkdtempSync(path.join(tmpdir(), "eproxy-durability-ferret-")));
    mongoUrl = ferret.url;
    stopFerret = () => ferret.stop();
  }
  const stops = [...Array.from({ length: runs }, () => "SIGKILL" as const), "SIGTERM" as const];
  try {
    const rounds = await runDurability({
      mongoUrl,
      stops,
      loadMs,
      concurrency,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    const kills = rounds.filter((r) => r.stop === "SIGKILL");
    const term = rounds.filter((r) => r.stop === "SIGTERM");
    const lines = [
      `trace durability: ${loadMs} ms of INSi relays at concurrency ${concurrency} before each stop, traces in MongoDB (FerretDB)`,
      ...rounds.map(
        (r) =>
          `  ${r.stop.padEnd(7)} ${String(r.answered).padStart(6)} answered (${r.rate.toFixed(0)}/s, ${r.cpuPerRelayMs.toFixed(2)} ms CPU each)  ${String(r.lost).padStart(4)} lost  oldest lost answered ${String(r.lostWindowMs).padStart(4)} ms before the stop  verify exit ${r.verifyExit}`,
      ),
      `planned stop (SIGTERM): ${term.reduce((n, r) => n + r.lost, 0)} traces lost`,
      `crash (kill -9): at most ${Math.max(0, ...kills.map((r) => r.lost))} traces lost, answered at most ${Math.max(0, ...kills.map((r) => r.lostWindowMs))} ms before the crash`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    if (rounds.some((r) => r.verifyExit !== 0)) {
      for (const r of rounds.filter((x) => x.verifyExit !== 0)) process.stderr.write(r.verifyOutput);
      process.exitCode = 1;
    }
    if (term.some((r) => r.lost > 0)) process.exitCode = 1;
  } finally {
    await stopFerret?.();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
