/**
 * `npm run bench:relay`: measures the relay against a baseline taken in the same run.
 *
 * - 50 MB ITI-41 MTOM upload: through eProxy (a separate `eproxy serve` process, so its memory is
 *   its own) and directly to the DMP simulator with the same certificate and API token. Reports
 *   duration, throughput, eProxy's peak RSS growth during the transfer, and checks byte-exactness.
 * - INSi searches (small SOAP): latency percentiles through eProxy and direct, at concurrency 8.
 *
 * Simulators run in this process; only eProxy runs in the child, sampled from /proc/<pid>/status.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { createApiKey } from "../src/auth/api-keys.ts";
import { ensureDevPki } from "../src/infra/dev-pki.ts";
import { startPscSimulator } from "../src/sandbox/psc-simulator.ts";
import {
  ACTIONS,
  insiSearchRequest,
  iti41RootPart,
  mtomContentType,
  mtomParts,
} from "../src/sandbox/soap-samples.ts";
import { startTeleserviceSimulator } from "../src/sandbox/teleservices.ts";
import { freePort } from "../test/support/cli.ts";
import { benchConfig } from "./bench-config.ts";

const MB = 1024 * 1024;
const DOC_BYTES = Number(process.env.BENCH_DOC_MB ?? 50) * MB;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SMALL_REQUESTS = Number(process.env.BENCH_SMALL ?? 400);

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

interface Target {
  url: string;
  agent: https.Agent;
  headers: Record<string, string>;
}

function post(
  t: Target,
  body: Buffer | Readable,
  headers: Record<string, string>,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      t.url,
      { method: "POST", agent: t.agent, headers: { ...t.headers, ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      },
    );
    req.on("error", reject);
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

async function upload(
  t: Target,
  sample?: () => void,
  docBytes = DOC_BYTES,
): Promise<{ ms: number; ok: boolean }> {
  const boundary = `MIMEBoundary_${randomBytes(8).toString("hex")}`;
  const root = iti41RootPart("doc1@bench");
  const f = mtomParts(boundary, root);
  const head = Buffer.from(f.head + f.attachmentHead("doc1@bench"));
  const tail = Buffer.from(f.tail);
  const chunk = randomBytes(256 * 1024);
  const hash = createHash("sha256");
  const total = head.length + docBytes + tail.length;
  const body = Readable.from(
    (function* () {
      hash.update(head);
      yield head;
      for (let n = 0; n < docBytes; n += chunk.length) {
        hash.update(chunk);
        yield chunk;
      }
      hash.update(tail);
      yield tail;
    })(),
  );
  const timer = sample ? setInterval(sample, 10) : undefined;
  const t0 = performance.now();
  const res = await post(t, body, {
    "content-type": mtomContentType(boundary, ACTIONS.iti41),
    "content-length": String(total),
  });
  const ms = performance.now() - t0;
  clearInterval(timer);
  return { ms, ok: res.status === 200 && res.text.includes(`${hash.digest("hex")}</ep:BodyHash>`) };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

async function small(t: Target): Promise<{ p50: number; p99: number; rps: number }> {
  const body = Buffer.from(insiSearchRequest("UNIQUE"));
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < SMALL_REQUESTS) {
        const s = performance.now();
        const r = await post(t, body, { "content-type": "application/soap+xml; charset=utf-8" });
        if (r.status !== 200) throw new Error(`INSi answered ${r.status}`);
        lat.push(performance.now() - s);
      }
    }),
  );
  return {
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    rps: (lat.length / (performance.now() - t0)) * 1000,
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-bench-"));
  const pki = await ensureDevPki(dir, ["lps-bench"]);
  const tls = { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem };
  const port = await freePort();
  const psc = await startPscSimulator({
    port: 0,
    tls,
    clients: [
      { id: "lps-bench", redirectUris: [`https://localhost:${port}/oauth2/codeflow/lps-bench/callback`] },
    ],
    autoApproveMs: 100,
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
        dmpMaxBodyBytes: 2 * DOC_BYTES,
        relaysPerSessionMax: 1_000_000,
        logLevel: "warn",
      }),
    ),
  );
  const child: ChildProcess = spawn(
    process.execPath,
    [
      // BENCH_CPU_PROF=DIR writes a V8 CPU profile of eProxy there (open it in Chrome DevTools).
      ...(process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      path.resolve("bin/eproxy.js"),
      "serve",
      "--config",
      config,
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("eProxy did not start")), 20_000);
      const poll = setInterval(() => {
        https
          .get(`https://localhost:${port}/healthz`, { ca: tls.ca }, (r) => {
            r.resume();
            clearInterval(poll);
            clearTimeout(t);
            resolve();
          })
          .on("error", () => {});
      }, 100);
    });
    const proxyAgent = new https.Agent({ ca: tls.ca, keepAlive: true, maxSockets: 8 });
    const login = await post(
      {
        url: `https://localhost:${port}/oauth2/ciba`,
        agent: proxyAgent,
        headers: { "x-eproxy-api-key": key.key },
      },
      Buffer.from(JSON.stringify({ nationalId: "899700218896", channel: "MOBILE" })),
      { "content-type": "application/json" },
    );
    const session = JSON.parse(login.text).session;
    const proxied = (p: string): Target => ({
      url: `https://localhost:${port}/send/${p}`,
      agent: proxyAgent,
      headers: { "x-eproxy-api-key": key.key, authorization: `Bearer ${session.sessionToken}` },
    });
    // Baseline: same certificate, same kind of API token, straight to the simulator.
    const directAgent = new https.Agent({
      ca: tls.ca,
      cert: client.certPem,
      key: client.keyPem,
      keepAlive: true,
      maxSockets: 8,
    });
    const exchange = await post(
      { url: tele.tokenEndpoint, agent: directAgent, headers: {} },
      Buffer.from(
        new URLSearchParams({
          grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
          subject_token: session.pscTokens.accessToken,
          subject_token_type: "urn:ietf:params:oauth:token-type:access_token",
          scope: "dmp",
        }).toString(),
      ),
      { "content-type": "application/x-www-form-urlencoded" },
    );
    const apiToken = JSON.parse(exchange.text).access_token;
    const direct = (p: string): Target => ({
      url: `${tele.url}/${p}`,
      agent: directAgent,
      headers: { authorization: `Bearer ${apiToken}` },
    });

    const pid = child.pid as number;
    // Warm-up: the first relay loads code and opens pools whatever the size; measured on its own
    // (a 256 KB document) so the 50 MB figure below shows what depends on the document.
    const warmStart = rssKb(pid);
    let warmPeak = warmStart;
    const warm = await upload(
      proxied("dmp/repository"),
      () => {
        warmPeak = Math.max(warmPeak, rssKb(pid));
      },
      256 * 1024,
    );
    const startRss = rssKb(pid);
    let coldPeak = startRss;
    const cold = await upload(proxied("dmp/repository"), () => {
      coldPeak = Math.max(coldPeak, rssKb(pid));
    });
    const rows: string[] = [];
    const proxiedRuns: Array<{ ms: number; growthMb: number; ok: boolean }> = [];
    const directRuns: Array<{ ms: number; ok: boolean }> = [];
    for (let i = 0; i < RUNS; i++) {
      const before = rssKb(pid);
      let peak = before;
      const r = await upload(proxied("dmp/repository"), () => {
        peak = Math.max(peak, rssKb(pid));
      });
      proxiedRuns.push({ ...r, growthMb: (peak - before) / 1024 });
      directRuns.push(await upload(direct("dmp/repository")));
    }
    const med = (xs: number[]) => percentile(xs, 50);
    const mbps = (ms: number) => (DOC_BYTES / MB / (ms / 1000)).toFixed(0);
    const pMs = med(proxiedRuns.map((r) => r.ms));
    const dMs = med(directRuns.map((r) => r.ms));
    rows.push(
      `ITI-41 MTOM upload, ${DOC_BYTES / MB} MB, median of ${RUNS} runs`,
      `  direct to simulator : ${dMs.toFixed(0).padStart(6)} ms  ${mbps(dMs).padStart(5)} MB/s  byte-exact ${directRuns.every((r) => r.ok)}`,
      `  through eProxy      : ${pMs.toFixed(0).padStart(6)} ms  ${mbps(pMs).padStart(5)} MB/s  byte-exact ${proxiedRuns.every((r) => r.ok)}`,
      `  eProxy peak RSS growth, warm-up (first relay, 256 KB document): ${((warmPeak - warmStart) / 1024).toFixed(1)} MB (byte-exact ${warm.ok})`,
      `  eProxy peak RSS growth, first ${DOC_BYTES / MB} MB transfer: ${((coldPeak - startRss) / 1024).toFixed(1)} MB (${(startRss / 1024).toFixed(0)} → ${(coldPeak / 1024).toFixed(0)} MB, ${cold.ms.toFixed(0)} ms, byte-exact ${cold.ok})`,
      `  eProxy peak RSS growth, measured runs: ${proxiedRuns.map((r) => r.growthMb.toFixed(1)).join(" / ")} MB; RSS after all: ${(rssKb(pid) / 1024).toFixed(0)} MB`,
    );
    const sp = await small(proxied("insi"));
    const sd = await small(direct("insi"));
    rows.push(
      `INSi search (~1 KB SOAP), ${SMALL_REQUESTS} requests, concurrency 8`,
      `  direct to simulator : p50 ${sd.p50.toFixed(2)} ms  p99 ${sd.p99.toFixed(2)} ms  ${sd.rps.toFixed(0)} req/s`,
      `  through eProxy      : p50 ${sp.p50.toFixed(2)} ms  p99 ${sp.p99.toFixed(2)} ms  ${sp.rps.toFixed(0)} req/s  (overhead p50 +${(sp.p50 - sd.p50).toFixed(2)} ms)`,
    );
    process.stdout.write(`\n${rows.join("\n")}\n`);
    proxyAgent.destroy();
    directAgent.destroy();
    if (!proxiedRuns.every((r) => r.ok) || !directRuns.every((r) => r.ok)) process.exitCode = 1;
  } finally {
    child.kill("SIGTERM");
    await psc.close();
    await tele.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
