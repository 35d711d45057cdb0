/**
 * `npm run bench:compare`: eProxy against Debian's nginx, in the same run, on the same machine.
 *
 * Fronts, all relaying to the same upstreams:
 * - direct: the load generator talks to the upstream itself;
 * - nginx: `proxy_pass` with `proxy_ssl_certificate` (mTLS) and a keep-alive upstream pool;
 * - eProxy: `eproxy serve` with the same client certificate, a real session and a cached API token.
 *
 * Upstreams: a fast nginx answering a fixed 5 KB SOAP 1.2 envelope over mTLS (`ssl_verify_client on`,
 * so it is never the bottleneck) for the 2 KB calls; the DMP simulator (hashes what it receives) for
 * the MTOM uploads. wrk cannot present a client certificate, so the direct front uses a second
 * listener of the same upstream nginx that does not ask for one (same answer; with keep-alive the
 * handshake is not in the figures).
 *
 * Per front it reports: req/s at fixed concurrency (wrk, closed loop), CPU ms per request of the
 * front's process tree (utime+stime from /proc/<pid>/stat of the process and all its descendants:
 * nginx master + workers, eProxy primary + workers), p50/p99 at a fixed arrival rate of 50 % of
 * eProxy's own maximum (vegeta, open model), the 100 MiB MTOM upload time (curl, streamed), the RSS
 * growth of the front during its first upload and byte-exactness. Rounds are interleaved
 * (direct, nginx, eProxy, direct, ...) and figures are medians with min–max: the machine is shared,
 * so only figures and ratios from one run are comparable with each other.
 *
 * Environment: BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_CONNECTIONS (64), BENCH_MTOM_MB (100),
 * BENCH_MTOM_ROUNDS (3), BENCH_FRONTS (e.g. `eProxy` alone, for profiling), BENCH_RATE (fixed arrival rate
 * instead of half eProxy's maximum), BENCH_MTOM_HTTP (`1.1` or `2`: the uploads to nginx and eProxy), BENCH_RATE_HTTP (`1.1` or `2`: the
 * fixed-rate runs; with 2 vegeta multiplexes its requests over one connection per front), BENCH_WORKERS (eProxy's `server.workers`, when set), BENCH_STORE
 * (`memory` | `redis`; redis starts a private redis-server), BENCH_CPU_PROF=DIR (V8 CPU profile of
 * eProxy), BENCH_NODE_FLAGS (extra flags for eProxy's node), BENCH_LOG_LEVEL (eProxy's log level, default info: its access line is part of the cost,
 * as nginx's access_log is), BENCH_KEEP=1 (keep the temporary directory),
 * BENCH_HOLD=SECONDS (after the set-up, print the fronts with their headers and hold, for other tools).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import https from "node:https";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { ForwardSoapRequestSchema } from "../gen/eproxy/v1/relay_pb.ts";
import { createApiKey } from "../src/auth/api-keys.ts";
import { ensureDevPki } from "../src/infra/dev-pki.ts";
import { startPscSimulator } from "../src/sandbox/psc-simulator.ts";
import {
  ACTIONS,
  insiSearchRequest,
  iti41RootPart,
  mtomContentType,
  mtomParts,
  SOAP12_NS,
  WSA_NS,
} from "../src/sandbox/soap-samples.ts";
import { startTeleserviceSimulator } from "../src/sandbox/teleservices.ts";
import { freePort } from "../test/support/cli.ts";
import { benchConfig } from "./bench-config.ts";

const MiB = 1024 * 1024;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const MTOM_MB = Number(process.env.BENCH_MTOM_MB ?? 100);
const MTOM_ROUNDS = Number(process.env.BENCH_MTOM_ROUNDS ?? 3);
const WORKERS = process.env.BENCH_WORKERS;
const STORE = process.env.BENCH_STORE ?? (WORKERS && WORKERS !== "1" ? "redis" : "memory");
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? "info";
/** HTTP version of the MTOM uploads to the nginx and eProxy fronts (direct is HTTP/1.1: the simulator). */
const MTOM_HTTP = process.env.BENCH_MTOM_HTTP === "2" ? "2" : "1.1";
/** HTTP version of the fixed-rate runs (vegeta): HTTP/2 multiplexes them over one connection. */
const RATE_HTTP = process.env.BENCH_RATE_HTTP === "2" ? "2" : "1.1";
const GOBIN = path.join(process.env.HOME ?? "/root", "go/bin");
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** BENCH_PARTS (comma list of `wrk`, `rate`, `mtom`, `proto`): the parts run (default all). */
const PARTS = new Set((process.env.BENCH_PARTS ?? "wrk,rate,mtom,proto").split(","));

type FrontName = "direct" | "nginx" | "eProxy";
/** BENCH_FRONTS (comma list, for profiling runs): the fronts measured; eProxy is always one of them (it sets the rate). */
const FRONTS: FrontName[] = (["direct", "nginx", "eProxy"] as const).filter(
  (n) => n === "eProxy" || !process.env.BENCH_FRONTS || process.env.BENCH_FRONTS.split(",").includes(n),
);

// ---------------------------------------------------------------- /proc sampling

/** The pid and all its descendants (nginx workers, cluster workers). */
function tree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(d));
      children.set(ppid, list);
    } catch {
      // the process ended meanwhile
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const p = todo.pop() as number;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** utime+stime of a process tree, in ms. */
function cpuMs(root: number): number {
  let ticks = 0;
  for (const p of tree(root)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields 14 and 15 of stat(5) (utime, stime), counted from the state field (3).
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // ended
    }
  }
  return (ticks * 1000) / CLK_TCK;
}

/** Resident memory of a process tree, in KiB. */
function rssKb(root: number): number {
  let kb = 0;
  for (const p of tree(root)) {
    try {
      kb += Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      // ended
    }
  }
  return kb;
}

// ---------------------------------------------------------------- helpers

function run(cmd: string, args: string[], opts: { input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString());
      else reject(new Error(`${cmd} exited ${code}: ${Buffer.concat(err).toString().slice(0, 2000)}`));
    });
    child.stdin.end(opts.input ?? "");
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function fmt(xs: number[], digits: number): string {
  if (xs.length === 0) return "–";
  const f = (x: number) => x.toFixed(digits);
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
}

async function waitFor(url: string, ca: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      https
        .get(url, { ca }, (r) => {
          r.resume();
          resolve(true);
        })
        .on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${url} did not answer`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function post(
  url: string,
  agent: https.Agent,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: "POST", agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A SOAP 1.2 envelope of exactly `bytes` bytes (padding in an XML comment). */
function paddedEnvelope(base: string, bytes: number): string {
  const pad = bytes - Buffer.byteLength(base) - "<!---->".length;
  if (pad < 0) return base;
  return base.replace("</soap:Body>", `<!--${"x".repeat(pad)}--></soap:Body>`);
}

// ---------------------------------------------------------------- nginx

function startNginx(dir: string, name: string, conf: string): ChildProcess {
  const prefix = path.join(dir, name);
  execFileSync("mkdir", ["-p", prefix, path.join(prefix, "logs"), path.join(prefix, "tmp")]);
  const file = path.join(prefix, "nginx.conf");
  writeFileSync(
    file,
    `worker_processes auto;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  keepalive_requests 1000000;
  ${conf}
}
`,
  );
  return spawn(
    "/usr/sbin/nginx",
    ["-e", `${prefix}/logs/error.log`, "-p", prefix, "-c", file, "-g", "daemon off;"],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
}

// ---------------------------------------------------------------- load generators

interface Front {
  name: FrontName;
  /** URL of the 2 KB call. */
  soapUrl: string;
  /** URL of the MTOM upload. */
  mtomUrl: string;
  /** Headers of both. */
  headers: Record<string, string>;
  /** Process whose tree's CPU and RSS are measured (none for direct). */
  pid?: number;
  /** curl's client certificate (direct MTOM only). */
  curlCert?: { cert: string; key: string };
}

async function wrk(
  dir: string,
  f: Front,
  body: string,
  seconds: number,
): Promise<{ rps: number; requests: number; errors: number }> {
  const script = path.join(dir, `wrk-${f.name}.lua`);
  const headers = { ...f.headers, "content-type": "application/soap+xml; charset=utf-8" };
  writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.body = ${JSON.stringify(body)}\n${Object.entries(headers)
      .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
      .join("\n")}\n`,
  );
  const out = await run("wrk", ["-t2", `-c${CONNECTIONS}`, `-d${seconds}s`, "-s", script, f.soapUrl]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const errors =
    Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) +
    [...out.matchAll(/(connect|read|write|timeout) (\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
  return { rps, requests, errors };
}

/** h2load (Debian's nghttp2-client), for the HTTP/2 and RPC calls; undefined when missing. */
function h2loadBin(): string | undefined {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return "h2load";
  } catch {
    return undefined;
  }
}

/**
 * One h2load run (16 connections, one request at a time on each, for `seconds`): calls per second
 * and the calls that succeeded (2xx), with the process tree's CPU over the run.
 */
async function h2load(
  bin: string,
  url: string,
  headers: Record<string, string>,
  bodyFile: string,
  http: "1.1" | "2",
  seconds: number,
  pid: number,
): Promise<{ rps: number; ok: number; total: number; cpuMs: number }> {
  const c0 = cpuMs(pid);
  const out = await run(bin, [
    "-c16",
    "-m1",
    `-D${seconds}`,
    `--npn-list=${http === "2" ? "h2" : "http/1.1"}`,
    ...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    "-d",
    bodyFile,
    url,
  ]);
  const c1 = cpuMs(pid);
  const m = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded/.exec(out);
  return {
    rps: Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0),
    total: Number(m?.[2] ?? 0),
    ok: Number(m?.[3] ?? 0),
    cpuMs: c1 - c0,
  };
}

function vegetaBin(): string | undefined {
  for (const p of [path.join(GOBIN, "vegeta"), "/usr/local/bin/vegeta", "/usr/bin/vegeta"]) {
    try {
      execFileSync(p, ["-version"], { stdio: "ignore" });
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

async function vegeta(
  bin: string,
  dir: string,
  f: Front,
  bodyFile: string,
  ca: string,
  rate: number,
  seconds: number,
  round: number,
): Promise<{
  p50: number;
  p99: number;
  p99Steady: number;
  max: number;
  success: number;
  peakConnections: number;
}> {
  const targets = path.join(dir, `vegeta-${f.name}.txt`);
  const headers = { ...f.headers, "content-type": "application/soap+xml; charset=utf-8" };
  writeFileSync(
    targets,
    `POST ${f.soapUrl}\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join("\n")}\n@${bodyFile}\n`,
  );
  // One results file per round (BENCH_KEEP=1 keeps them: `vegeta encode -to csv` for per-request times).
  const results = path.join(dir, `vegeta-${f.name}-${round + 1}.bin`);
  // Connections the generator holds open on the front (sampled): vegeta adds a worker, and a
  // connection, whenever all its workers are busy at a tick, so a slow start opens many at once.
  const port = new URL(f.soapUrl).port;
  let peakConnections = 0;
  const sampler = setInterval(() => {
    try {
      const out = execFileSync("ss", ["-Htn", "state", "established", `( sport = :${port} )`]).toString();
      peakConnections = Math.max(peakConnections, out.split("\n").filter((l) => l.trim()).length);
    } catch {
      // ss missing: no figure
    }
  }, 100);
  await run(bin, [
    "attack",
    `-targets=${targets}`,
    `-rate=${Math.round(rate)}/s`,
    `-duration=${seconds}s`,
    `-root-certs=${ca}`,
    `-http2=${RATE_HTTP === "2"}`,
    "-keepalive=true",
    `-max-connections=${CONNECTIONS * 4}`,
    `-output=${results}`,
  ]);
  clearInterval(sampler);
  const rep = JSON.parse(await run(bin, ["report", "-type=json", results])) as {
    latencies: Record<string, number>;
    success: number;
  };
  // The same run without its first second (connection set-up: a TLS handshake per connection the
  // generator opens), from the per-request results (CSV: timestamp ns, code, latency ns, ...).
  const rows = (await run(bin, ["encode", "-to", "csv", results]))
    .split("\n")
    .filter((l) => l)
    .map((l) => l.split(",").slice(0, 3).map(Number) as [number, number, number]);
  const start = rows.reduce((m, r) => Math.min(m, r[0]), Number.POSITIVE_INFINITY);
  const steady = rows
    .filter((r) => r[0] >= start + 1e9)
    .map((r) => r[2])
    .sort((a, b) => a - b);
  const ms = (ns: number | undefined) => (ns ?? 0) / 1e6;
  return {
    p50: ms(rep.latencies["50th"]),
    p99: ms(rep.latencies["99th"]),
    p99Steady: ms(steady[Math.min(steady.length - 1, Math.floor(steady.length * 0.99))]),
    max: ms(rep.latencies.max),
    success: rep.success,
    peakConnections,
  };
}

async function curlUpload(
  f: Front,
  file: string,
  contentType: string,
  ca: string,
): Promise<{ ms: number; status: number; text: string }> {
  const respFile = `${file}.${f.name}.resp`;
  const args = [
    "-sS",
    f.name === "direct" || MTOM_HTTP === "1.1" ? "--http1.1" : "--http2",
    "-X",
    "POST",
    "-T",
    file,
    "-o",
    respFile,
    "-w",
    "%{http_code} %{time_total}",
    "--cacert",
    ca,
    "-H",
    `content-type: ${contentType}`,
    "-H",
    "Expect:",
    ...Object.entries(f.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    ...(f.curlCert ? ["--cert", f.curlCert.cert, "--key", f.curlCert.key] : []),
    f.mtomUrl,
  ];
  const out = (await run("curl", args)).trim().split(" ");
  return { status: Number(out[0]), ms: Number(out[1]) * 1000, text: readFileSync(respFile, "utf8") };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-compare-"));
  // nginx workers run as an unprivileged user when started by root: they must read the answer file.
  chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  const closers: Array<() => Promise<void>> = [];
  const lines: string[] = [];
  const say = (s: string) => {
    lines.push(s);
    process.stdout.write(`${s}\n`);
  };
  // Stopped from outside (Ctrl-C, or the end of a BENCH_HOLD session): nginx, Redis and eProxy go too.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
      if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  try {
    const pki = await ensureDevPki(dir, ["lps-bench"]);
    const client = pki.clients["lps-bench"];
    if (!client) throw new Error("no client certificate");
    const tls = { cert: pki.server.certPem, key: pki.server.keyPem, ca: pki.ca.certPem };

    // Simulators: PSC (login), target AS (token exchange), DMP (MTOM upstream, hashes the body).
    const port = await freePort();
    const psc = await startPscSimulator({
      port: 0,
      tls,
      clients: [{ id: "lps-bench", redirectUris: [`https://localhost:${port}/cb`] }],
      autoApproveMs: 100,
      cibaIntervalSeconds: 1,
      introspectionClients: [{ id: "bench-as", secret: "bench-secret" }],
    });
    closers.push(() => psc.close());
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
    closers.push(() => tele.close());

    // The fast upstream: a fixed 5 KB SOAP answer over mTLS, and the same without client
    // certificate for wrk (direct front).
    const answer = paddedEnvelope(
      `<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="${SOAP12_NS}" xmlns:wsa="${WSA_NS}"><soap:Header><wsa:Action>${ACTIONS.insiSearch}Response</wsa:Action></soap:Header><soap:Body><ok/></soap:Body></soap:Envelope>`,
      5 * 1024,
    );
    // The answer is a static file; POST to a static file is 405 in nginx, turned into the file (200).
    execFileSync("mkdir", ["-p", path.join(dir, "www")]);
    writeFileSync(path.join(dir, "www", "insi"), answer);
    const [upPort, upDirectPort, frontPort] = [await freePort(), await freePort(), await freePort()];
    const sslCommon = `ssl_certificate ${pki.server.certFile}; ssl_certificate_key ${pki.server.keyFile}; ssl_protocols TLSv1.2 TLSv1.3;`;
    const upstreamLocations = `
    client_max_body_size 0;
    location / { root ${dir}/www; default_type "application/soap+xml; charset=utf-8"; error_page 405 =200 $uri; }`;
    const upstream = startNginx(
      dir,
      "upstream",
      `access_log off;
  server { listen 127.0.0.1:${upPort} ssl; ${sslCommon}
    ssl_client_certificate ${pki.ca.certFile}; ssl_verify_client on; ${upstreamLocations} }
  server { listen 127.0.0.1:${upDirectPort} ssl http2; ${sslCommon} ${upstreamLocations} }`,
    );
    children.push(upstream);
    const teleUrl = new URL(tele.url);
    const nginx = startNginx(
      dir,
      "front",
      `access_log ${dir}/front/logs/access.log;
  upstream soap { server 127.0.0.1:${upPort}; keepalive 64; }
  upstream dmp { server 127.0.0.1:${teleUrl.port}; keepalive 8; }
  server { listen 127.0.0.1:${frontPort} ssl http2; ${sslCommon}
    client_max_body_size 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_request_buffering off;
    proxy_ssl_certificate ${client.certFile};
    proxy_ssl_certificate_key ${client.keyFile};
    proxy_ssl_trusted_certificate ${pki.ca.certFile};
    proxy_ssl_verify on;
    proxy_ssl_name localhost;
    proxy_ssl_server_name on;
    proxy_ssl_session_reuse on;
    location /insi { proxy_pass https://soap; }
    location /dmp/ { proxy_pass https://dmp; }
  }`,
    );
    children.push(nginx);

    // eProxy (a separate process; with workers, a tree of them).
    let redisUrl: string | undefined;
    if (STORE === "redis") {
      const redisPort = await freePort();
      const redis = spawn(
        "redis-server",
        [
          "--port",
          String(redisPort),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--dir",
          dir,
        ],
        { stdio: "ignore" },
      );
      children.push(redis);
      redisUrl = `redis://127.0.0.1:${redisPort}`;
      writeFileSync(path.join(dir, "store.key"), randomBytes(32).toString("base64"));
    }
    const key = createApiKey();
    const config = path.join(dir, "eproxy.yaml");
    const insiUrl = `https://localhost:${upPort}/insi`;
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
          insiUrl,
          dmpMaxBodyBytes: 2 * MTOM_MB * MiB,
          shape: process.env.BENCH_SHAPE === "operator" ? "operator" : "bench",
          relaysPerSessionMax: 1_000_000_000,
          logLevel: LOG_LEVEL,
          server: {
            ...(WORKERS ? { workers: Number(WORKERS) } : {}),
            // BENCH_SERVER_JSON: extra `server` keys, e.g. '{"reclaimEveryBytes":0}'.
            ...(process.env.BENCH_SERVER_JSON ? JSON.parse(process.env.BENCH_SERVER_JSON) : {}),
          },
          extra: {
            ...(redisUrl
              ? {
                  stores: {
                    sessions: { kind: "redis", url: redisUrl },
                    encryption: {
                      keys: [{ id: "k1", file: path.join(dir, "store.key") }],
                      activeKeyId: "k1",
                    },
                  },
                }
              : {}),
            traces: { spoolFile: path.join(dir, "spool"), file: path.join(dir, "traces.jsonl") },
          },
        }),
      ),
    );
    const eproxyLog = path.join(dir, "eproxy.log");
    const logFd = openSync(eproxyLog, "w");
    // BENCH_WRAP: a command eProxy's node runs under (e.g. `valgrind --tool=callgrind`: instruction
    // counts per call, repeatable on a busy machine).
    const wrap = (process.env.BENCH_WRAP ?? "").split(" ").filter((w) => w);
    const eproxy = spawn(
      wrap[0] ?? process.execPath,
      [
        ...(wrap.length ? [...wrap.slice(1), process.execPath] : []),
        "--trace-gc",
        // BENCH_NODE_FLAGS: extra V8/Node flags for eProxy (e.g. --max-semi-space-size=8).
        ...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(" ") : []),
        ...(process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
        path.resolve(process.env.BENCH_EPROXY_BIN ?? "bin/eproxy.js"),
        "serve",
        "--config",
        config,
      ],
      { stdio: ["ignore", logFd, "inherit"] },
    );
    children.push(eproxy);

    await waitFor(`https://localhost:${port}/healthz`, tls.ca, wrap.length ? 600_000 : 20_000);
    await waitFor(`https://localhost:${upDirectPort}/`, tls.ca);
    await waitFor(`https://localhost:${frontPort}/`, tls.ca);

    // A session (CIBA, auto-approved) and an API token for the MTOM calls that bypass eProxy.
    const agent = new https.Agent({ ca: tls.ca, keepAlive: true });
    const login = await post(
      `https://localhost:${port}/oauth2/ciba`,
      agent,
      { "x-eproxy-api-key": key.key, "content-type": "application/json" },
      JSON.stringify({ nationalId: "899700218896", channel: "MOBILE" }),
    );
    const session = JSON.parse(login.text).session;
    if (!session) throw new Error(`login failed: ${login.status} ${login.text}`);
    const certAgent = new https.Agent({
      ca: tls.ca,
      cert: client.certPem,
      key: client.keyPem,
      keepAlive: true,
    });
    const exchange = await post(
      tele.tokenEndpoint,
      certAgent,
      { "content-type": "application/x-www-form-urlencoded" },
      new URLSearchParams({
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token: session.pscTokens.accessToken,
        subject_token_type: "urn:ietf:params:oauth:token-type:access_token",
        scope: "dmp",
      }).toString(),
    );
    const apiToken = JSON.parse(exchange.text).access_token as string;
    agent.destroy();
    certAgent.destroy();

    const fronts: Record<FrontName, Front> = {
      direct: {
        name: "direct",
        soapUrl: `https://localhost:${upDirectPort}/insi`,
        mtomUrl: `${tele.url}/dmp/repository`,
        headers: { authorization: `Bearer ${apiToken}` },
        curlCert: { cert: client.certFile, key: client.keyFile },
      },
      nginx: {
        name: "nginx",
        soapUrl: `https://localhost:${frontPort}/insi`,
        mtomUrl: `https://localhost:${frontPort}/dmp/repository`,
        headers: { authorization: `Bearer ${apiToken}` },
        pid: nginx.pid as number,
      },
      eProxy: {
        name: "eProxy",
        soapUrl: `https://localhost:${port}/send/insi`,
        mtomUrl: `https://localhost:${port}/send/dmp/repository`,
        headers: { "x-eproxy-api-key": key.key, authorization: `Bearer ${session.sessionToken}` },
        pid: eproxy.pid as number,
      },
    };

    const soapBody = paddedEnvelope(insiSearchRequest("BENCH"), 2 * 1024);
    const soapFile = path.join(dir, "request.xml");
    writeFileSync(soapFile, soapBody);

    if (process.env.BENCH_HOLD) {
      // Set up, then hold for other tools (h2load, a profiler): the fronts, their headers and the body.
      const hold = Number(process.env.BENCH_HOLD);
      process.stdout.write(
        `${JSON.stringify({ ca: pki.ca.certFile, body: soapFile, fronts, pid: eproxy.pid }, null, 1)}\nholding ${hold} s\n`,
      );
      await new Promise((r) => setTimeout(r, hold * 1000));
    }

    say("# eProxy vs nginx (bench/compare.ts)");
    say("");
    say(
      `- machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, load average at start ${loadavg()[0]?.toFixed(2)} (shared)`,
    );
    say(
      `- ${process.version}, ${
        execFileSync("/usr/sbin/nginx", ["-v"], { stdio: ["ignore", "pipe", "pipe"] })
          .toString()
          .trim() || "nginx"
      } (worker_processes auto), wrk, vegeta, curl`,
    );
    say(
      `- eProxy: workers ${WORKERS ?? "(default)"}, store ${STORE}, log level ${LOG_LEVEL}; ${ROUNDS} interleaved rounds × ${SECONDS} s, ${CONNECTIONS} connections, HTTP/1.1`,
    );
    say("- 2 KB SOAP 1.2 request, fixed 5 KB SOAP answer from an nginx upstream with ssl_verify_client on");
    say("");

    // Warm-up: code loaded, pools open, JIT done.
    for (const name of FRONTS) await wrk(dir, fronts[name], soapBody, 2);

    // 1. Throughput and CPU per request at fixed concurrency.
    const rps: Record<FrontName, number[]> = { direct: [], nginx: [], eProxy: [] };
    const cpu: Record<FrontName, number[]> = { direct: [], nginx: [], eProxy: [] };
    // Per front: only eProxy's failures fail the command; the others' are reported.
    const errors: Record<FrontName, number> = { direct: 0, nginx: 0, eProxy: 0 };
    for (let r = 0; r < (PARTS.has("wrk") ? ROUNDS : 0); r++) {
      for (const name of FRONTS) {
        const f = fronts[name];
        const c0 = f.pid ? cpuMs(f.pid) : 0;
        const w = await wrk(dir, f, soapBody, SECONDS);
        const c1 = f.pid ? cpuMs(f.pid) : 0;
        rps[name].push(w.rps);
        if (f.pid && w.requests > 0) cpu[name].push((c1 - c0) / w.requests);
        errors[name] += w.errors;
        if (w.errors > 0) process.stderr.write(`${name}: ${w.errors} errors in round ${r + 1}\n`);
      }
    }

    // 2. Latency at a fixed arrival rate: 50 % of eProxy's own maximum.
    const vbin = vegetaBin();
    const rate = process.env.BENCH_RATE
      ? Number(process.env.BENCH_RATE)
      : Math.max(10, median(rps.eProxy) / 2);
    const lat: Record<FrontName, { p50: number[]; p99: number[]; p99Steady: number[]; conns: number[] }> = {
      direct: { p50: [], p99: [], p99Steady: [], conns: [] },
      nginx: { p50: [], p99: [], p99Steady: [], conns: [] },
      eProxy: { p50: [], p99: [], p99Steady: [], conns: [] },
    };
    const gcPauses: number[] = [];
    if (vbin && PARTS.has("rate")) {
      for (let r = 0; r < ROUNDS; r++) {
        for (const name of FRONTS) {
          const logStart = readFileSync(eproxyLog).length;
          const v = await vegeta(vbin, dir, fronts[name], soapFile, pki.ca.certFile, rate, SECONDS, r);
          lat[name].p50.push(v.p50);
          lat[name].p99.push(v.p99);
          lat[name].p99Steady.push(v.p99Steady);
          lat[name].conns.push(v.peakConnections);
          if (v.success < 1) {
            errors[name]++;
            process.stderr.write(`${name}: vegeta success ratio ${v.success}\n`);
          }
          if (name === "eProxy") {
            const gc = readFileSync(eproxyLog).subarray(logStart).toString();
            for (const m of gc.matchAll(/MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/g)) {
              gcPauses.push(Number(m[1]));
            }
          }
        }
      }
    } else {
      process.stderr.write("vegeta not found (.ci/install-tools.sh vegeta): fixed-rate latencies skipped\n");
    }

    // 3. MTOM: 100 MiB upload, streamed by curl; the DMP simulator answers the SHA-256 of what it got.
    const boundary = `MIMEBoundary_${randomBytes(8).toString("hex")}`;
    const parts = mtomParts(boundary, iti41RootPart("doc1@bench"));
    const mtomFile = path.join(dir, "upload.mtom");
    const hash = createHash("sha256");
    const fd = openSync(mtomFile, "w");
    const head = Buffer.from(parts.head + parts.attachmentHead("doc1@bench"));
    hash.update(head);
    writeSync(fd, head);
    const chunk = randomBytes(MiB);
    for (let n = 0; n < MTOM_MB; n++) {
      hash.update(chunk);
      writeSync(fd, chunk);
    }
    const tail = Buffer.from(parts.tail);
    hash.update(tail);
    writeSync(fd, tail);
    closeSync(fd);
    const digest = hash.digest("hex");
    const mtomType = mtomContentType(boundary, ACTIONS.iti41);
    const mtom: Record<
      FrontName,
      { ms: number[]; firstGrowthMb?: number; growthMb: number[]; exact: boolean }
    > = {
      direct: { ms: [], growthMb: [], exact: true },
      nginx: { ms: [], growthMb: [], exact: true },
      eProxy: { ms: [], growthMb: [], exact: true },
    };
    for (let r = 0; r < (PARTS.has("mtom") ? MTOM_ROUNDS : 0); r++) {
      for (const name of FRONTS) {
        const f = fronts[name];
        const before = f.pid ? rssKb(f.pid) : 0;
        let peak = before;
        const timer = f.pid
          ? setInterval(() => {
              peak = Math.max(peak, rssKb(f.pid as number));
            }, 10)
          : undefined;
        const u = await curlUpload(f, mtomFile, mtomType, pki.ca.certFile);
        clearInterval(timer);
        const m = mtom[name];
        m.ms.push(u.ms);
        if (f.pid) {
          const growth = (peak - before) / 1024;
          if (r === 0) m.firstGrowthMb = growth;
          m.growthMb.push(growth);
        }
        const exact = u.status === 200 && u.text.includes(`${digest}</ep:BodyHash>`);
        if (!exact) process.stderr.write(`${name}: MTOM upload not byte-exact (HTTP ${u.status})\n`);
        m.exact &&= exact;
      }
    }
    rmSync(mtomFile, { force: true });

    // 4. The relay per protocol (h2load): /send over HTTP/1.1 and HTTP/2, and the ForwardSoap RPC
    // over gRPC and Connect (binary and JSON), against nginx's proxy_pass over HTTP/2.
    const calls: Array<{
      name: string;
      pid: number;
      url: string;
      headers: Record<string, string>;
      file: string;
      http: "1.1" | "2";
    }> = [];
    const h2 = h2loadBin();
    if (h2 && FRONTS.includes("eProxy") && PARTS.has("proto")) {
      const soapType = "application/soap+xml; charset=utf-8";
      const rpcUrl = `${new URL(fronts.eProxy.soapUrl).origin}/eproxy.v1.RelayService/ForwardSoap`;
      const message = create(ForwardSoapRequestSchema, {
        sessionToken: session.sessionToken,
        service: "insi",
        contentType: soapType,
        body: Buffer.from(soapBody),
      });
      const bin = toBinary(ForwardSoapRequestSchema, message);
      const framed = Buffer.alloc(5 + bin.length);
      framed.writeUInt32BE(bin.length, 1);
      framed.set(bin, 5);
      const files = {
        bin: path.join(dir, "rpc.bin"),
        grpc: path.join(dir, "rpc.grpc"),
        json: path.join(dir, "rpc.json"),
      };
      writeFileSync(files.bin, bin);
      writeFileSync(files.grpc, framed);
      writeFileSync(files.json, toJsonString(ForwardSoapRequestSchema, message));
      const apiKey = { "x-eproxy-api-key": key.key };
      const e = fronts.eProxy;
      const ePid = e.pid as number;
      if (FRONTS.includes("nginx")) {
        const n = fronts.nginx;
        calls.push({
          name: "nginx proxy_pass, HTTP/2",
          pid: n.pid as number,
          url: n.soapUrl,
          headers: { ...n.headers, "content-type": soapType },
          file: soapFile,
          http: "2",
        });
      }
      calls.push(
        {
          name: "eProxy /send, HTTP/1.1",
          pid: ePid,
          url: e.soapUrl,
          headers: { ...e.headers, "content-type": soapType },
          file: soapFile,
          http: "1.1",
        },
        {
          name: "eProxy /send, HTTP/2",
          pid: ePid,
          url: e.soapUrl,
          headers: { ...e.headers, "content-type": soapType },
          file: soapFile,
          http: "2",
        },
        {
          name: "eProxy ForwardSoap, gRPC",
          pid: ePid,
          url: rpcUrl,
          headers: { ...apiKey, "content-type": "application/grpc", te: "trailers" },
          file: files.grpc,
          http: "2",
        },
        {
          name: "eProxy ForwardSoap, Connect binary",
          pid: ePid,
          url: rpcUrl,
          headers: { ...apiKey, "content-type": "application/proto" },
          file: files.bin,
          http: "2",
        },
        {
          name: "eProxy ForwardSoap, Connect JSON",
          pid: ePid,
          url: rpcUrl,
          headers: { ...apiKey, "content-type": "application/json" },
          file: files.json,
          http: "2",
        },
      );
    } else if (!h2) {
      process.stderr.write("h2load missing (apt-get install -y nghttp2-client): no per-protocol figures\n");
    }
    const perCall: Record<string, { rps: number[]; cpu: number[]; failed: number }> = {};
    for (const c of calls) perCall[c.name] = { rps: [], cpu: [], failed: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      for (const c of calls) {
        const out = await h2load(
          h2 as string,
          c.url,
          c.headers,
          c.file,
          c.http,
          Math.max(2, Math.round(SECONDS / 2)),
          c.pid,
        );
        const pc = perCall[c.name] as { rps: number[]; cpu: number[]; failed: number };
        pc.rps.push(out.rps);
        if (out.ok > 0) pc.cpu.push(out.cpuMs / out.ok);
        pc.failed += out.total - out.ok;
        if (out.total - out.ok > 0 && c.name.startsWith("eProxy")) errors.eProxy++;
      }
    }

    // Report.
    const ratio = (a: number[], b: number[]) =>
      a.length && b.length ? `${(median(a) / median(b)).toFixed(2)}×` : "–";
    say(
      `| front | req/s (c=${CONNECTIONS}) | CPU ms/req | p50 ms @ ${Math.round(rate)}/s${RATE_HTTP === "2" ? " HTTP/2" : ""} | p99 ms @ ${Math.round(rate)}/s${RATE_HTTP === "2" ? " HTTP/2" : ""} | MTOM ${MTOM_MB} MiB s (HTTP/${MTOM_HTTP}) | RSS growth 1st upload MiB | byte-exact |`,
    );
    say("|---|---|---|---|---|---|---|---|");
    for (const name of FRONTS) {
      const m = mtom[name];
      say(
        `| ${name} | ${fmt(rps[name], 0)} | ${cpu[name].length ? fmt(cpu[name], 3) : "–"} | ${fmt(lat[name].p50, 2)} | ${fmt(lat[name].p99, 2)} | ${fmt(
          m.ms.map((x) => x / 1000),
          2,
        )} | ${m.firstGrowthMb === undefined ? "–" : `${m.firstGrowthMb.toFixed(1)} (later max ${Math.max(...m.growthMb.slice(1), 0).toFixed(1)})`} | ${m.exact} |`,
      );
    }
    say(
      `| eProxy/nginx | ${ratio(rps.eProxy, rps.nginx)} | ${ratio(cpu.eProxy, cpu.nginx)} | ${ratio(lat.eProxy.p50, lat.nginx.p50)} | ${ratio(lat.eProxy.p99, lat.nginx.p99)} | ${ratio(mtom.eProxy.ms, mtom.nginx.ms)} | | |`,
    );
    say("");
    const p99Over = lat.eProxy.p99.length ? median(lat.eProxy.p99) - median(lat.direct.p99) : Number.NaN;
    say(
      `- eProxy p99 − direct p99 at the fixed rate: ${p99Over.toFixed(2)} ms; eProxy GC pauses during the fixed-rate runs (--trace-gc): ${gcPauses.length} pauses, max ${gcPauses.length ? Math.max(...gcPauses).toFixed(2) : "–"} ms, ${gcPauses.filter((p) => p > 10).length} over 10 ms`,
    );
    say(
      `- at the fixed rate, p99 without the first second (connection set-up) and the generator's peak open connections: ${FRONTS.map(
        (n) => `${n} ${fmt(lat[n].p99Steady, 2)} ms, ${fmt(lat[n].conns, 0)} connections`,
      ).join("; ")}`,
    );
    say(
      `- errors (non-2xx, socket errors, vegeta runs below 100 % success): ${FRONTS.map((n) => `${n} ${errors[n]}`).join(", ")}`,
    );
    if (calls.length) {
      say("");
      say("Per protocol (h2load, 16 connections, one request at a time on each):");
      say("");
      say("| call | calls/s | CPU ms/call | failed |");
      say("|---|---|---|---|");
      for (const c of calls) {
        const pc = perCall[c.name] as { rps: number[]; cpu: number[]; failed: number };
        say(`| ${c.name} | ${fmt(pc.rps, 0)} | ${pc.cpu.length ? fmt(pc.cpu, 3) : "–"} | ${pc.failed} |`);
      }
    }
    say("");
    say(
      "Medians with min–max over interleaved rounds; only ratios within one run are comparable (shared machine).",
    );
    // Failures of nginx or of the upstream alone are the reference's, reported above, not eProxy's.
    if (errors.eProxy > 0 || !mtom.eProxy.exact) process.exitCode = 1;
    if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, `${lines.join("\n")}\n`);
  } finally {
    // Waits for each to exit: a CPU profile is written at exit.
    for (const c of children.reverse()) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    }
    for (const c of closers) await c().catch(() => {});
    if (!process.env.BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`kept ${dir}\n`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
