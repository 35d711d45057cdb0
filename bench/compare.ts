/**
 * `npm run bench:compare`: eProxy against Debian's nginx and against the Node floor, in the same run,
 * on the same machine. `BENCH_SHAPES=bench,operator,redis-mongo,workers npm run bench:compare` runs
 * each configuration shape in turn (BENCH_SHAPE, below) and ends with the issue-25 targets.
 *
 * Fronts, all relaying to the same upstreams:
 * - direct: the load generator talks to the upstream itself;
 * - nginx: `proxy_pass` with `proxy_ssl_certificate` (mTLS) and a keep-alive upstream pool;
 * - floor: bench/minimal-relay.ts, none of eProxy's work on the same listener options and undici;
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
 * nginx master + workers, eProxy primary + workers), per protocol with h2load (/send HTTP/1.1 and
 * HTTP/2, ForwardSoap gRPC / Connect binary / JSON), p50/p99 at a fixed arrival rate on the steady
 * part (one vegeta attack: BENCH_WARM seconds of warm-up, then BENCH_SECONDS measured; only the
 * requests after the warm-up count) — /send at 50 % of eProxy's own maximum for every front,
 * ForwardSoap over gRPC at 50 % of its own maximum against the floor's /send over HTTP/2 at the same
 * rate —, the 100 MiB MTOM upload time over HTTP/1.1 and HTTP/2 (curl, streamed), the RSS growth of
 * the front during its first upload and byte-exactness, and (part `instructions`, with valgrind) the
 * marginal instructions per /send call of eProxy and of the floor under callgrind, load-independent.
 * Rounds are interleaved and figures are
 * medians with min–max: the machine is shared, so only figures and ratios from one run compare.
 *
 * Environment: BENCH_SHAPE (`bench` | `operator` | `redis-mongo` | `workers`, see SHAPE), BENCH_SHAPES
 * (several, one after the other, with shorter defaults: see runShapes), BENCH_ROUNDS (3), BENCH_SECONDS (8),
 * BENCH_WARM (3), BENCH_CONNECTIONS
 * (64), BENCH_MTOM_MB (100), BENCH_MTOM_ROUNDS (3), BENCH_MTOM_HTTP (`1.1` or `2` only; default both),
 * BENCH_FRONTS (comma list), BENCH_PARTS (`wrk,proto,rate,mtom,instructions`), BENCH_RATE / BENCH_RPC_RATE
 * (fixed arrival rates instead of half the maxima), BENCH_RATE_HTTP (`2`: /send's fixed rate over HTTP/2),
 * BENCH_RATE_CONNECTIONS (the fixed-rate generator's fixed pool, 16), BENCH_PROTO_CALLS (`all` | `grpc`),
 * BENCH_INSTR_C / _WARM / _N1 / _N2 (the `instructions` part), BENCH_WRAP_FLOOR=1 (the floor under BENCH_WRAP too),
 * BENCH_WORKERS, BENCH_STORE (`memory` | `redis`), BENCH_CPU_PROF=DIR (V8 CPU profile of eProxy),
 * BENCH_NODE_FLAGS (extra flags for eProxy's node, e.g. `--expose-gc` for the reclaimer), BENCH_WRAP
 * (a command eProxy's node runs under, e.g. `valgrind --tool=callgrind --instr-atstart=no`),
 * BENCH_EPROXY_BIN, BENCH_LOG_LEVEL (default info: the access line is part of the cost, as nginx's
 * access_log is), BENCH_KEEP=1 (keep the temporary directory), BENCH_OUT (the tables, as Markdown),
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
  readlinkSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import https from "node:https";
import { connect } from "node:net";
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
import { ferretBinary } from "../test/support/servers.ts";
import { benchConfig } from "./bench-config.ts";

const MiB = 1024 * 1024;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
const MTOM_MB = Number(process.env.BENCH_MTOM_MB ?? 100);
const MTOM_ROUNDS = Number(process.env.BENCH_MTOM_ROUNDS ?? 3);
/**
 * BENCH_SHAPE: the configuration measured. `bench` (default): two teleservices, memory sessions, the
 * trace file. The production shapes of issue 25: `operator` (a): three teleservices with
 * `extraParams`, 101 MiB bodies, 64 connections per origin, no relay-rate alert, memory sessions, the
 * trace file; `redis-mongo` (b): the same with Redis sessions and MongoDB traces (FerretDB, SQLite);
 * `workers` (c): the same as (b) with `server.workers: 2`.
 */
const SHAPE = (process.env.BENCH_SHAPE ?? "bench") as "bench" | "operator" | "redis-mongo" | "workers";
if (!["bench", "operator", "redis-mongo", "workers"].includes(SHAPE)) {
  throw new Error(`BENCH_SHAPE: bench, operator, redis-mongo or workers, not ${SHAPE}`);
}
const WORKERS = process.env.BENCH_WORKERS ?? (SHAPE === "workers" ? "2" : undefined);
const STORE =
  process.env.BENCH_STORE ??
  (SHAPE === "redis-mongo" || SHAPE === "workers" || (WORKERS && WORKERS !== "1") ? "redis" : "memory");
const MONGO = SHAPE === "redis-mongo" || SHAPE === "workers";
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? "info";
/** Warm-up of each fixed-rate attack, not counted (BENCH_WARM, seconds). */
const WARM_SECONDS = Number(process.env.BENCH_WARM ?? 3);
/** HTTP version of the MTOM uploads to the nginx and eProxy fronts (direct is HTTP/1.1: the simulator). */
const MTOM_HTTP_ENV = process.env.BENCH_MTOM_HTTP as "1.1" | "2" | undefined;
/**
 * Connections (and workers) of the fixed-rate generator, the same for every front (BENCH_RATE_CONNECTIONS):
 * a fixed pool, so a pause of the front does not make vegeta open hundreds of new TLS connections in the
 * measured window (a handshake storm that then measures the generator, not the relay).
 */
const RATE_CONNECTIONS = Number(process.env.BENCH_RATE_CONNECTIONS ?? 16);
/**
 * BENCH_PROTO_CALLS: `all` (default) the per-protocol table in full; `grpc` only what the fixed-rate part
 * needs (ForwardSoap over gRPC, whose maximum sets its rate) and the floor's /send over HTTP/2 beside it.
 */
const PROTO_CALLS = process.env.BENCH_PROTO_CALLS === "grpc" ? "grpc" : "all";
/** HTTP version of the fixed-rate runs (vegeta): HTTP/2 multiplexes them over one connection. */
const RATE_HTTP = process.env.BENCH_RATE_HTTP === "2" ? "2" : "1.1";
const GOBIN = path.join(process.env.HOME ?? "/root", "go/bin");
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/**
 * BENCH_PARTS (comma list of `wrk`, `rate`, `mtom`, `proto`, `instructions`): the parts run (default all;
 * `instructions` is skipped, and said, when valgrind is not installed).
 */
const PARTS = new Set((process.env.BENCH_PARTS ?? "wrk,rate,mtom,proto,instructions").split(","));
/**
 * The `instructions` part (callgrind, see instructionsPerCall): connections, warm-up calls, and the two
 * instrumented runs whose difference is measured (BENCH_INSTR_C, BENCH_INSTR_WARM, BENCH_INSTR_N1,
 * BENCH_INSTR_N2).
 */
const INSTR = {
  c: Number(process.env.BENCH_INSTR_C ?? 16),
  warm: Number(process.env.BENCH_INSTR_WARM ?? 3000),
  n1: Number(process.env.BENCH_INSTR_N1 ?? 500),
  n2: Number(process.env.BENCH_INSTR_N2 ?? 3500),
};

/** `floor`: bench/minimal-relay.ts, the Node floor (same listener options, undici client, upstream). */
type FrontName = "direct" | "nginx" | "floor" | "eProxy";
/** BENCH_FRONTS (comma list, for profiling runs): the fronts measured; eProxy is always one of them (it sets the rate). */
const FRONTS: FrontName[] = (["direct", "nginx", "floor", "eProxy"] as const).filter(
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

async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1", () => {
        s.end();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`port ${port} did not open`);
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

/** What vegeta sends: one request, repeated. */
interface RateTarget {
  /** Names the results files. */
  name: string;
  url: string;
  headers: Record<string, string>;
  bodyFile: string;
  /** HTTP/2 (gRPC calls) or HTTP/1.1. */
  http2: boolean;
}

/**
 * One attack at a fixed arrival rate: `WARM_SECONDS` of warm-up then `seconds` measured, in one run
 * (the generator's connections open during the warm-up); only the requests sent after the warm-up
 * count (per-request results, `vegeta encode -to csv`: timestamp ns, code, latency ns).
 */
async function vegeta(
  bin: string,
  dir: string,
  t: RateTarget,
  ca: string,
  rate: number,
  seconds: number,
  round: number,
): Promise<{
  p50: number;
  p99: number;
  max: number;
  success: number;
  peakConnections: number;
  warmConnections: number;
}> {
  const targets = path.join(dir, `vegeta-${t.name}.txt`);
  writeFileSync(
    targets,
    `POST ${t.url}\n${Object.entries(t.headers)
      .map(([k, v]) => `${k}: ${v}`)
      .join("\n")}\n@${t.bodyFile}\n`,
  );
  // One results file per round (BENCH_KEEP=1 keeps them).
  const results = path.join(dir, `vegeta-${t.name}-${round + 1}.bin`);
  // Connections the generator holds open on the front (sampled): the peak, and the peak at the end of
  // the warm-up (more in the measured part means handshakes were measured).
  const port = new URL(t.url).port;
  let peakConnections = 0;
  let warmConnections = 0;
  const started = Date.now();
  const sampler = setInterval(() => {
    try {
      const out = execFileSync("ss", ["-Htn", "state", "established", `( sport = :${port} )`]).toString();
      peakConnections = Math.max(peakConnections, out.split("\n").filter((l) => l.trim()).length);
      if (Date.now() - started < WARM_SECONDS * 1000) warmConnections = peakConnections;
    } catch {
      // ss missing: no figure
    }
  }, 100);
  // A fixed pool: as many workers as connections, all kept alive (vegeta otherwise adds workers, and
  // connections, whenever the front falls behind).
  const pool = t.http2 ? 1 : RATE_CONNECTIONS;
  await run(bin, [
    "attack",
    `-targets=${targets}`,
    `-rate=${Math.round(rate)}/s`,
    `-duration=${WARM_SECONDS + seconds}s`,
    `-root-certs=${ca}`,
    `-http2=${t.http2}`,
    "-keepalive=true",
    `-workers=${t.http2 ? RATE_CONNECTIONS : pool}`,
    `-max-workers=${t.http2 ? RATE_CONNECTIONS : pool}`,
    `-connections=${pool}`,
    `-max-connections=${pool}`,
    `-output=${results}`,
  ]);
  clearInterval(sampler);
  const rows = (await run(bin, ["encode", "-to", "csv", results]))
    .split("\n")
    .filter((l) => l)
    .map((l) => l.split(",").slice(0, 3).map(Number) as [number, number, number]);
  const start = rows.reduce((m, r) => Math.min(m, r[0]), Number.POSITIVE_INFINITY);
  const steady = rows.filter((r) => r[0] >= start + WARM_SECONDS * 1e9);
  const lat = steady.map((r) => r[2]).sort((a, b) => a - b);
  const q = (p: number) => (lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0) / 1e6;
  return {
    p50: q(0.5),
    p99: q(0.99),
    max: (lat[lat.length - 1] ?? 0) / 1e6,
    success: steady.length ? steady.filter((r) => r[1] >= 200 && r[1] < 300).length / steady.length : 0,
    peakConnections,
    warmConnections,
  };
}

async function curlUpload(
  f: Front,
  file: string,
  contentType: string,
  ca: string,
  http: "1.1" | "2",
): Promise<{ ms: number; status: number; text: string }> {
  const respFile = `${file}.${f.name}.resp`;
  const args = [
    "-sS",
    f.name === "direct" || http === "1.1" ? "--http1.1" : "--http2",
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

// ---------------------------------------------------------------- instructions per call (callgrind)

/** The callgrind processes of a tree. */
function callgrindPids(root: number): number[] {
  return tree(root).filter((p) => {
    try {
      return /callgrind-/.test(readlinkSync(`/proc/${p}/exe`));
    } catch {
      return false;
    }
  });
}

/**
 * Instructions of the last two callgrind dumps of each process, summed over the processes: all threads,
 * and the main thread alone (`--separate-threads=yes` writes `cg.<pid>.<dump>-<thread>`, the main
 * thread being `01`). The main thread runs the JavaScript, TLS and the parser; the other threads are
 * V8's garbage-collection and compiler helpers, whose share of a short window depends on when a
 * collection happens to fall, so the main thread's figure is the one that repeats.
 */
function lastTwoDumps(dir: string, pids: number[]): { all: [number, number]; main: [number, number] } {
  const all: [number, number] = [0, 0];
  const main: [number, number] = [0, 0];
  for (const pid of pids) {
    const byDump = new Map<number, { all: number; main: number }>();
    for (const f of readdirSync(dir)) {
      const m = new RegExp(`^cg\\.${pid}\\.(\\d+)(?:-(\\d+))?$`).exec(f);
      if (!m) continue;
      const t = /^totals: (\d+)/m.exec(readFileSync(path.join(dir, f), "utf8"));
      if (!t) throw new Error(`no totals in ${f}`);
      const dump = Number(m[1]);
      const d = byDump.get(dump) ?? { all: 0, main: 0 };
      d.all += Number(t[1]);
      if (m[2] === undefined || Number(m[2]) === 1) d.main += Number(t[1]);
      byDump.set(dump, d);
    }
    const dumps = [...byDump.keys()].sort((a, b) => a - b).slice(-2);
    if (dumps.length !== 2) throw new Error(`callgrind: ${byDump.size} dumps for pid ${pid}`);
    const [d1, d2] = dumps.map((n) => byDump.get(n) as { all: number; main: number }) as [
      { all: number; main: number },
      { all: number; main: number },
    ];
    all[0] += d1.all;
    all[1] += d2.all;
    main[0] += d1.main;
    main[1] += d2.main;
  }
  return { all, main };
}

function commandExists(cmd: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

interface InstructionFigures {
  /** Main thread, per call (the repeatable figure). */
  eProxy: number;
  floor: number;
  /** All threads (GC and compiler helpers included), per call. */
  allThreads: { eProxy: number; floor: number };
  /** Calls that did not answer 2xx during the runs (counted, not retried). */
  failed: { eProxy: number; floor: number };
  seconds: number;
}

/**
 * Marginal instructions per /send call (HTTP/1.1) of eProxy and of the floor, in this shape: a second
 * set-up of this script (BENCH_HOLD) with both under `valgrind --tool=callgrind --instr-atstart=no`;
 * per front, in parallel: INSTR.warm calls uninstrumented, then N1 calls, dump, N2 calls, dump, each run
 * by h2load on INSTR.c fresh connections, and per call = (I2 − I1) / (N2 − N1): the handshakes and
 * anything else per run cancel out. Instruction counts do not depend on the machine's load (the /proc
 * CPU figures do). A reason instead when valgrind or h2load is missing, or the runs failed.
 */
async function instructionsPerCall(dir: string): Promise<InstructionFigures | string> {
  for (const [cmd, pkg] of [
    ["valgrind", "valgrind"],
    ["callgrind_control", "valgrind"],
    ["h2load", "nghttp2-client"],
  ]) {
    if (!commandExists(cmd as string)) return `${cmd} not found (apt-get install -y ${pkg})`;
  }
  if (WORKERS !== undefined && WORKERS !== "1") {
    return "not measured with server.workers > 1 (the cluster's workers run the code of the single-process shape; see redis-mongo)";
  }
  const t0 = Date.now();
  const out = path.join(dir, "callgrind");
  execFileSync("mkdir", ["-p", out]);
  const holder = spawn(process.execPath, [process.argv[1] as string], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      ...process.env,
      BENCH_SHAPES: "",
      BENCH_SHAPE: SHAPE,
      BENCH_FRONTS: "floor,eProxy",
      // One process: with Redis sessions eProxy's default is several workers, which callgrind (no
      // --trace-children) would not see; a worker runs the same per-call code.
      BENCH_WORKERS: "1",
      BENCH_HOLD: "3600",
      BENCH_WRAP: `valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --log-file=${out}/valgrind.%p.log --callgrind-out-file=${out}/cg.%p`,
      BENCH_WRAP_FLOOR: "1",
      BENCH_CPU_PROF: "",
      BENCH_OUT: "",
      BENCH_SUMMARY: "",
    },
  });
  try {
    let text = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("callgrind set-up: no answer in 10 min")), 600_000);
      holder.stdout?.on("data", (c: Buffer) => {
        text += c.toString();
        if (text.includes("\nholding ")) {
          clearTimeout(timer);
          resolve();
        }
      });
      holder.on("exit", (code) => reject(new Error(`callgrind set-up exited ${code}`)));
    });
    const held = JSON.parse(text.slice(0, text.lastIndexOf("\nholding "))) as {
      body: string;
      fronts: Record<"floor" | "eProxy", Front>;
    };
    const measure = async (f: Front): Promise<{ perCall: number; allThreads: number; failed: number }> => {
      const h2load = async (n: number) => {
        const o = await run("h2load", [
          `-c${INSTR.c}`,
          "-m1",
          `-n${n}`,
          "--npn-list=http/1.1",
          ...Object.entries({ ...f.headers, "content-type": "application/soap+xml; charset=utf-8" }).flatMap(
            ([k, v]) => ["-H", `${k}: ${v}`],
          ),
          "-d",
          held.body,
          f.soapUrl,
        ]);
        const ok = Number(/(\d+) succeeded/.exec(o)?.[1] ?? 0);
        failed += n - ok;
      };
      let failed = 0;
      const pids = callgrindPids(f.pid as number);
      if (pids.length !== tree(f.pid as number).length) {
        process.stderr.write(
          `instructions: ${f.name} has processes outside callgrind: its figure misses them\n`,
        );
      }
      const ctl = (...args: string[]) =>
        Promise.all(pids.map((p) => run("callgrind_control", [...args, String(p)])));
      const steps: string[] = [];
      let t = Date.now();
      const lap = (what: string) => {
        steps.push(`${what} ${((Date.now() - t) / 1000).toFixed(0)} s`);
        t = Date.now();
      };
      lap("set-up");
      await h2load(INSTR.warm);
      lap(`warm-up ${INSTR.warm}`);
      await ctl("-i", "on");
      await h2load(INSTR.n1);
      await ctl("-d");
      lap(`N1 ${INSTR.n1}`);
      await h2load(INSTR.n2);
      await ctl("-d");
      await ctl("-i", "off");
      lap(`N2 ${INSTR.n2}`);
      process.stderr.write(`instructions, ${f.name} under callgrind: ${steps.join(", ")}\n`);
      const { all, main } = lastTwoDumps(out, pids);
      const n = INSTR.n2 - INSTR.n1;
      return { perCall: (main[1] - main[0]) / n, allThreads: (all[1] - all[0]) / n, failed };
    };
    const [eProxy, floor] = await Promise.all([measure(held.fronts.eProxy), measure(held.fronts.floor)]);
    return {
      eProxy: eProxy.perCall,
      floor: floor.perCall,
      allThreads: { eProxy: eProxy.allThreads, floor: floor.allThreads },
      failed: { eProxy: eProxy.failed, floor: floor.failed },
      seconds: (Date.now() - t0) / 1000,
    };
  } catch (err) {
    return `failed: ${(err as Error).message}`;
  } finally {
    if (holder.exitCode === null) {
      const exited = new Promise((r) => holder.once("exit", r));
      holder.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    }
  }
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
    // MongoDB traces (b, c): FerretDB with its SQLite backend (.ci/install-ferretdb.sh builds it).
    let mongoUrl: string | undefined;
    if (MONGO) {
      const bin = ferretBinary();
      if (!bin) throw new Error("FerretDB not found: bash .ci/install-ferretdb.sh");
      const mongoPort = await freePort();
      execFileSync("mkdir", ["-p", `${dir}/ferret`]);
      const ferret = spawn(
        bin,
        [
          "--handler=sqlite",
          `--sqlite-url=file:${dir}/ferret/`,
          `--listen-addr=127.0.0.1:${mongoPort}`,
          `--state-dir=${dir}/ferret`,
          "--log-level=error",
          "--debug-addr=-",
        ],
        { stdio: "ignore", env: { ...process.env, FERRETDB_TELEMETRY: "disable" } },
      );
      children.push(ferret);
      mongoUrl = `mongodb://127.0.0.1:${mongoPort}/eproxy`;
      await waitForPort(mongoPort);
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
          shape: SHAPE === "bench" ? "bench" : "operator",
          relaysPerSessionMax: 1_000_000_000,
          logLevel: LOG_LEVEL,
          server: {
            ...(WORKERS ? { workers: Number(WORKERS) } : {}),
            // BENCH_SERVER_JSON: extra `server` keys, e.g. '{"reclaimEveryBytes":0}'.
            ...(process.env.BENCH_SERVER_JSON ? JSON.parse(process.env.BENCH_SERVER_JSON) : {}),
          },
          extra: {
            ...(redisUrl || mongoUrl
              ? {
                  stores: {
                    ...(redisUrl
                      ? {
                          sessions: { kind: "redis", url: redisUrl },
                          encryption: {
                            keys: [{ id: "k1", file: path.join(dir, "store.key") }],
                            activeKeyId: "k1",
                          },
                        }
                      : {}),
                    ...(mongoUrl ? { mongodbUrl: mongoUrl } : {}),
                  },
                }
              : {}),
            // With MongoDB, traces go there (through the spool); otherwise to the JSON-lines file.
            traces: mongoUrl
              ? { spoolFile: path.join(dir, "spool") }
              : { spoolFile: path.join(dir, "spool"), file: path.join(dir, "traces.jsonl") },
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

    // The Node floor, beside eProxy: the same configuration on its own port.
    const floorPort = await freePort();
    const floorConfig = path.join(dir, "floor.json");
    const cfgJson = JSON.parse(readFileSync(config, "utf8")) as { server: Record<string, unknown> };
    writeFileSync(
      floorConfig,
      JSON.stringify({ ...cfgJson, server: { ...cfgJson.server, port: floorPort } }),
    );
    // BENCH_WRAP_FLOOR=1: the floor runs under BENCH_WRAP too (the `instructions` part).
    const floorWrap = process.env.BENCH_WRAP_FLOOR ? wrap : [];
    const floor = FRONTS.includes("floor")
      ? spawn(
          floorWrap[0] ?? process.execPath,
          [
            ...(floorWrap.length ? [...floorWrap.slice(1), process.execPath] : []),
            path.resolve("bench/minimal-relay.ts"),
            "--config",
            floorConfig,
          ],
          { stdio: ["ignore", "ignore", "inherit"] },
        )
      : undefined;
    if (floor) {
      children.push(floor);
      await waitFor(`https://localhost:${floorPort}/healthz`, tls.ca, floorWrap.length ? 600_000 : 20_000);
    }

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
      floor: {
        name: "floor",
        soapUrl: `https://localhost:${floorPort}/send/insi`,
        mtomUrl: `https://localhost:${floorPort}/send/dmp/repository`,
        // The floor relays the caller's Authorization as it is: it is given the API token.
        headers: { authorization: `Bearer ${apiToken}` },
        pid: floor?.pid as number,
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

    const shapeName = {
      bench:
        "bench (two teleservices with scopes, insi at the default body limit, memory sessions, trace file)",
      operator:
        "(a) operator: three teleservices with tokenExchange extraParams, maxBodyBytes 101 MiB, maxConnectionsPerOrigin 64, relaysPerSession null, memory sessions, trace file + spool",
      "redis-mongo": "(b) the operator's, with Redis sessions and MongoDB traces (FerretDB 1.24, SQLite)",
      workers: "(c) the operator's, with Redis sessions, MongoDB traces and server.workers: 2",
    }[SHAPE];
    say(`## Shape ${SHAPE}: ${shapeName}`);
    say("");
    say(
      `- machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, load average at start ${loadavg()[0]?.toFixed(2)} (shared); ${process.version}`,
    );
    say(
      `- eProxy: workers ${WORKERS ?? "(default)"}, store ${STORE}${MONGO ? " + MongoDB traces" : ""}, log level ${LOG_LEVEL}; ${ROUNDS} interleaved rounds × ${SECONDS} s, c=${CONNECTIONS} (wrk, HTTP/1.1); fixed rate: one vegeta attack of ${WARM_SECONDS} s warm-up + ${SECONDS} s, only the requests after the warm-up counted`,
    );
    say(
      "- 2 KB SOAP 1.2 request, fixed 5 KB SOAP answer from an nginx upstream with ssl_verify_client on; floor = bench/minimal-relay.ts",
    );
    say("");

    // Warm-up: code loaded, pools open, JIT done.
    for (const name of FRONTS) await wrk(dir, fronts[name], soapBody, 2);

    const none = () => ({ direct: [], nginx: [], floor: [], eProxy: [] }) as Record<FrontName, number[]>;
    // 1. Throughput and CPU per request at fixed concurrency.
    const rps = none();
    const cpu = none();
    // Per front: only eProxy's failures fail the command; the others' are reported.
    const errors: Record<FrontName, number> = { direct: 0, nginx: 0, floor: 0, eProxy: 0 };
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

    // 2. The relay per protocol (h2load): /send over HTTP/1.1 and HTTP/2, and the ForwardSoap RPC
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
    const soapType = "application/soap+xml; charset=utf-8";
    const rpcUrl = `${new URL(fronts.eProxy.soapUrl).origin}/eproxy.v1.RelayService/ForwardSoap`;
    const rpcFiles = {
      bin: path.join(dir, "rpc.bin"),
      grpc: path.join(dir, "rpc.grpc"),
      json: path.join(dir, "rpc.json"),
    };
    {
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
      writeFileSync(rpcFiles.bin, bin);
      writeFileSync(rpcFiles.grpc, framed);
      writeFileSync(rpcFiles.json, toJsonString(ForwardSoapRequestSchema, message));
    }
    const apiKey = { "x-eproxy-api-key": key.key };
    const grpcHeaders = { ...apiKey, "content-type": "application/grpc", te: "trailers" };
    if (h2 && FRONTS.includes("eProxy") && PARTS.has("proto")) {
      const e = fronts.eProxy;
      const ePid = e.pid as number;
      for (const name of ["nginx", "floor"] as const) {
        if (!FRONTS.includes(name)) continue;
        const n = fronts[name];
        calls.push({
          name: `${name} /send, HTTP/2`,
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
          headers: grpcHeaders,
          file: rpcFiles.grpc,
          http: "2",
        },
        {
          name: "eProxy ForwardSoap, Connect binary",
          pid: ePid,
          url: rpcUrl,
          headers: { ...apiKey, "content-type": "application/proto" },
          file: rpcFiles.bin,
          http: "2",
        },
        {
          name: "eProxy ForwardSoap, Connect JSON",
          pid: ePid,
          url: rpcUrl,
          headers: { ...apiKey, "content-type": "application/json" },
          file: rpcFiles.json,
          http: "2",
        },
      );
    } else if (!h2) {
      process.stderr.write("h2load missing (apt-get install -y nghttp2-client): no per-protocol figures\n");
    }
    if (PROTO_CALLS === "grpc") {
      const keep = new Set(["eProxy ForwardSoap, gRPC", "floor /send, HTTP/2"]);
      calls.splice(0, calls.length, ...calls.filter((c) => keep.has(c.name)));
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

    // 3. Latency at a fixed arrival rate, on the steady part: /send at 50 % of eProxy's own maximum
    // (wrk) for every front; ForwardSoap over gRPC at 50 % of its own maximum (h2load), with the
    // floor's /send over HTTP/2 at the same rate as its reference.
    const vbin = vegetaBin();
    const rate = process.env.BENCH_RATE
      ? Number(process.env.BENCH_RATE)
      : Math.max(10, (median(rps.eProxy) || 1000) / 2);
    const grpcMax = perCall["eProxy ForwardSoap, gRPC"]?.rps ?? [];
    const rpcRate = process.env.BENCH_RPC_RATE
      ? Number(process.env.BENCH_RPC_RATE)
      : Math.max(10, (median(grpcMax) || 2 * rate) / 2);
    const lat: Record<string, { p50: number[]; p99: number[]; conns: number[]; warmConns: number[] }> = {};
    const soapType2 = { "content-type": soapType };
    const rateTargets: Array<{ key: string; t: RateTarget; rate: number }> = FRONTS.map((name) => ({
      key: name,
      rate,
      t: {
        name,
        url: fronts[name].soapUrl,
        headers: { ...fronts[name].headers, ...soapType2 },
        bodyFile: soapFile,
        http2: RATE_HTTP === "2",
      },
    }));
    if (FRONTS.includes("eProxy") && PARTS.has("proto")) {
      rateTargets.push({
        key: "eProxy ForwardSoap gRPC",
        rate: rpcRate,
        t: { name: "eProxy-grpc", url: rpcUrl, headers: grpcHeaders, bodyFile: rpcFiles.grpc, http2: true },
      });
      if (FRONTS.includes("floor")) {
        rateTargets.push({
          key: "floor /send HTTP/2",
          rate: rpcRate,
          t: {
            name: "floor-h2",
            url: fronts.floor.soapUrl,
            headers: { ...fronts.floor.headers, ...soapType2 },
            bodyFile: soapFile,
            http2: true,
          },
        });
      }
    }
    const gcPauses: number[] = [];
    if (vbin && PARTS.has("rate")) {
      for (let r = 0; r < ROUNDS; r++) {
        for (const rt of rateTargets) {
          const logStart = readFileSync(eproxyLog).length;
          const v = await vegeta(vbin, dir, rt.t, pki.ca.certFile, rt.rate, SECONDS, r);
          lat[rt.key] ??= { p50: [], p99: [], conns: [], warmConns: [] };
          const l = lat[rt.key] as { p50: number[]; p99: number[]; conns: number[]; warmConns: number[] };
          l.p50.push(v.p50);
          l.p99.push(v.p99);
          l.conns.push(v.peakConnections);
          l.warmConns.push(v.warmConnections);
          if (v.success < 1) {
            if (rt.key.startsWith("eProxy")) errors.eProxy++;
            process.stderr.write(`${rt.key}: vegeta success ratio ${v.success}\n`);
          }
          if (rt.key === "eProxy") {
            const gc = readFileSync(eproxyLog).subarray(logStart).toString();
            for (const m of gc.matchAll(/MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/g)) {
              gcPauses.push(Number(m[1]));
            }
          }
        }
      }
    } else if (!vbin) {
      process.stderr.write("vegeta not found (.ci/install-tools.sh vegeta): fixed-rate latencies skipped\n");
    }

    // 4. MTOM: 100 MiB upload, streamed by curl, over HTTP/1.1 and HTTP/2 (direct: HTTP/1.1, the
    // simulator); the DMP simulator answers the SHA-256 of what it got.
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
    type MtomFigures = { ms: number[]; firstGrowthMb?: number; growthMb: number[]; exact: boolean };
    const mtom: Record<string, MtomFigures> = {};
    const mtomHttps = (MTOM_HTTP_ENV ? [MTOM_HTTP_ENV] : ["1.1", "2"]) as Array<"1.1" | "2">;
    for (const http of PARTS.has("mtom") ? mtomHttps : []) {
      for (let r = 0; r < MTOM_ROUNDS; r++) {
        for (const name of FRONTS) {
          if (name === "direct" && http === "2") continue;
          const f = fronts[name];
          const before = f.pid ? rssKb(f.pid) : 0;
          let peak = before;
          const timer = f.pid
            ? setInterval(() => {
                peak = Math.max(peak, rssKb(f.pid as number));
              }, 10)
            : undefined;
          const u = await curlUpload(f, mtomFile, mtomType, pki.ca.certFile, http);
          clearInterval(timer);
          mtom[`${name} ${http}`] ??= { ms: [], growthMb: [], exact: true };
          const m = mtom[`${name} ${http}`] as MtomFigures;
          m.ms.push(u.ms);
          if (f.pid) {
            const growth = (peak - before) / 1024;
            if (r === 0) m.firstGrowthMb = growth;
            m.growthMb.push(growth);
          }
          const exact = u.status === 200 && u.text.includes(`${digest}</ep:BodyHash>`);
          if (!exact) process.stderr.write(`${name}: MTOM upload not byte-exact (HTTP ${u.status})\n`);
          m.exact &&= exact;
          if (!exact && name === "eProxy") errors.eProxy++;
        }
      }
    }
    rmSync(mtomFile, { force: true });

    // 5. Instructions per /send call under callgrind, eProxy and the floor (load-independent CPU).
    let instr: InstructionFigures | undefined;
    let instrNote = "";
    if (PARTS.has("instructions") && FRONTS.includes("floor")) {
      const r = await instructionsPerCall(dir);
      if (typeof r === "string") {
        instrNote = `instructions per call skipped: ${r}`;
        process.stderr.write(`\n*** ${instrNote} ***\n\n`);
      } else instr = r;
    }

    // Report.
    const ratio = (a: number[] | undefined, b: number[] | undefined) =>
      a?.length && b?.length ? `${(median(a) / median(b)).toFixed(2)}×` : "–";
    const minus = (a: number[] | undefined, b: number[] | undefined) =>
      a?.length && b?.length
        ? `${median(a) - median(b) >= 0 ? "+" : ""}${(median(a) - median(b)).toFixed(2)}`
        : "–";
    const mt = (name: FrontName, http: string) => {
      const m = mtom[`${name} ${http}`];
      if (!m) return "–";
      const vsNginx = name === "nginx" ? "" : ` (${ratio(m.ms, mtom[`nginx ${http}`]?.ms)} nginx)`;
      return `${(median(m.ms) / 1000).toFixed(2)} s${vsNginx}${m.exact ? "" : " NOT byte-exact"}`;
    };
    const rss = (name: FrontName) => {
      const g = mtomHttps
        .map((h) => mtom[`${name} ${h}`])
        .filter((m): m is MtomFigures => !!m && m.firstGrowthMb !== undefined);
      return g.length ? g.map((m) => (m.firstGrowthMb as number).toFixed(1)).join(" / ") : "–";
    };
    const ins = (name: FrontName) =>
      instr && (name === "eProxy" || name === "floor") ? Math.round(instr[name]).toLocaleString("en") : "–";
    say(
      `| front | req/s (c=${CONNECTIONS}) | CPU ms/call | CPU × floor | instructions/call | × floor | p50 / p99 ms @ ${Math.round(rate)}/s (steady) | p99 − direct | p99 − floor | MTOM ${MTOM_MB} MiB HTTP/1.1 | MTOM HTTP/2 | RSS growth, 1st upload MiB (${mtomHttps.join(" / ")}) |`,
    );
    say("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (const name of FRONTS) {
      const l = lat[name];
      say(
        `| ${name} | ${fmt(rps[name], 0)} | ${cpu[name].length ? fmt(cpu[name], 3) : "–"} | ${name === "floor" || !cpu[name].length ? "" : ratio(cpu[name], cpu.floor)} | ${ins(name)} | ${name === "eProxy" && instr ? `${(instr.eProxy / instr.floor).toFixed(2)}×` : ""} | ${l ? `${median(l.p50).toFixed(2)} / ${fmt(l.p99, 2)}` : "–"} | ${name === "direct" ? "" : minus(l?.p99, lat.direct?.p99)} | ${name === "floor" || name === "direct" ? "" : minus(l?.p99, lat.floor?.p99)} | ${mt(name, "1.1")} | ${mt(name, "2")} | ${rss(name)} |`,
      );
    }
    const g = lat["eProxy ForwardSoap gRPC"];
    const fl = lat["floor /send HTTP/2"];
    if (g) {
      say(
        `| eProxy ForwardSoap gRPC @ ${Math.round(rpcRate)}/s (50 % of its h2load max) | | | | | | ${median(g.p50).toFixed(2)} / ${fmt(g.p99, 2)} | | ${minus(g.p99, fl?.p99)} (floor /send HTTP/2 at the same rate: p99 ${fl ? fmt(fl.p99, 2) : "–"}) | | | |`,
      );
    }
    say("");
    say(
      `- eProxy GC pauses during its /send fixed-rate runs (--trace-gc): ${gcPauses.length}, max ${gcPauses.length ? Math.max(...gcPauses).toFixed(1) : "–"} ms, ${gcPauses.filter((p) => p > 10).length} over 10 ms; generator's peak connections (pool of ${RATE_CONNECTIONS}, at the end of the warm-up → over the whole attack): ${Object.entries(
        lat,
      )
        .map(([k, l]) => `${k} ${Math.max(...l.warmConns)} → ${Math.max(...l.conns)}`)
        .join(", ")}`,
    );
    say(
      `- errors (non-2xx, socket errors, vegeta below 100 % success, MTOM not byte-exact): ${FRONTS.map((n) => `${n} ${errors[n]}`).join(", ")}`,
    );
    if (instr) {
      say(
        `- instructions/call: marginal instructions per /send call (HTTP/1.1) under callgrind, eProxy and the floor side by side in a second set-up of this shape (one process: server.workers 1): ${INSTR.warm} calls of warm-up, then (I(${INSTR.n2} calls) − I(${INSTR.n1} calls)) / ${INSTR.n2 - INSTR.n1}, h2load on ${INSTR.c} new connections per run, so handshakes cancel out (${Math.round(instr.seconds)} s); the main thread's instructions (JavaScript, TLS, parsing: the figure that repeats); all threads, V8's GC and compiler helpers included: eProxy ${Math.round(instr.allThreads.eProxy).toLocaleString("en")}, floor ${Math.round(instr.allThreads.floor).toLocaleString("en")} (${(instr.allThreads.eProxy / instr.allThreads.floor).toFixed(2)}×); independent of the machine's load${instr.failed.eProxy + instr.failed.floor ? `; calls not 2xx under callgrind: eProxy ${instr.failed.eProxy}, floor ${instr.failed.floor}` : ""}`,
      );
    } else if (instrNote) say(`- ${instrNote}`);
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
    // Failures of nginx, of the floor or of the upstream alone are the references', reported above.
    if (errors.eProxy > 0) process.exitCode = 1;
    const summary = {
      shape: SHAPE,
      cpuPerCall: median(cpu.eProxy),
      floorCpuPerCall: median(cpu.floor),
      instrPerCall: instr ? instr.eProxy : Number.NaN,
      floorInstrPerCall: instr ? instr.floor : Number.NaN,
      p99: lat.eProxy ? median(lat.eProxy.p99) : Number.NaN,
      floorP99: lat.floor ? median(lat.floor.p99) : Number.NaN,
      grpcP99: g ? median(g.p99) : Number.NaN,
      floorH2P99: fl ? median(fl.p99) : Number.NaN,
      mtom11:
        mtom["eProxy 1.1"] && mtom["nginx 1.1"]
          ? median(mtom["eProxy 1.1"].ms) / median(mtom["nginx 1.1"].ms)
          : Number.NaN,
      mtom2:
        mtom["eProxy 2"] && mtom["nginx 2"]
          ? median(mtom["eProxy 2"].ms) / median(mtom["nginx 2"].ms)
          : Number.NaN,
    };
    if (process.env.BENCH_SUMMARY) writeFileSync(process.env.BENCH_SUMMARY, JSON.stringify(summary));
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

/**
 * BENCH_SHAPES=bench,operator,redis-mongo,workers: one run per shape (a child each, one after the
 * other), their tables, then the issue-25 targets read from them. BENCH_OUT gets all of it.
 */
async function runShapes(list: string[]): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-shapes-"));
  // Shorter defaults than one shape's (BENCH_* set by the caller win): what the issue's tables need,
  // about 5 minutes a shape (bench/README.md).
  const defaults: Record<string, string> = {
    BENCH_ROUNDS: "2",
    BENCH_SECONDS: "6",
    BENCH_WARM: "2",
    BENCH_MTOM_ROUNDS: "2",
    BENCH_PROTO_CALLS: "grpc",
  };
  const settings = Object.fromEntries(Object.entries(defaults).map(([k, v]) => [k, process.env[k] ?? v]));
  const out: string[] = [];
  const summaries: Array<Record<string, number | string>> = [];
  let failed = false;
  out.push(
    `# bench:compare over production shapes (\`BENCH_SHAPES=${list.join(",")} npm run bench:compare\`)`,
  );
  out.push("");
  out.push(
    `Run ${new Date().toISOString()}, ${cpus().length} × ${cpus()[0]?.model ?? "?"} (shared), ${process.version}; ${Object.entries(
      settings,
    )
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}.`,
  );
  out.push("");
  process.stdout.write(`${out.join("\n")}\n`);
  for (const shape of list) {
    const file = path.join(dir, `${shape}.md`);
    const summary = path.join(dir, `${shape}.json`);
    const code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [process.argv[1] as string], {
        stdio: "inherit",
        env: {
          ...process.env,
          ...settings,
          BENCH_SHAPES: "",
          BENCH_SHAPE: shape,
          BENCH_OUT: file,
          BENCH_SUMMARY: summary,
        },
      });
      child.on("exit", (c) => resolve(c ?? 1));
    });
    if (code !== 0) failed = true;
    try {
      out.push(readFileSync(file, "utf8"));
      summaries.push(JSON.parse(readFileSync(summary, "utf8")) as Record<string, number | string>);
    } catch {
      out.push(`## Shape ${shape}: no result (exit ${code})`, "");
    }
  }
  const n = (x: number | string | undefined, d = 2) =>
    typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "–";
  const met = (ok: boolean | undefined) => (ok === undefined ? "–" : ok ? "met" : "**not met**");
  out.push("## Targets (issue 25)", "");
  out.push(
    "| shape | CPU/call eProxy ÷ floor, /proc (target) | instructions/call eProxy ÷ floor (callgrind) | /send p99 − floor p99, ms (≤ 5) | ForwardSoap p99 − floor HTTP/2 p99, ms (≤ 5) | MTOM ÷ nginx HTTP/1.1, HTTP/2 (≤ 1.3) |",
  );
  out.push("|---|---|---|---|---|---|");
  for (const s of summaries) {
    const cpuRatio = (s.cpuPerCall as number) / (s.floorCpuPerCall as number);
    const instrRatio = (s.instrPerCall as number) / (s.floorInstrPerCall as number);
    const target = s.shape === "operator" ? 1.3 : s.shape === "redis-mongo" ? 1.6 : undefined;
    const sendOver = (s.p99 as number) - (s.floorP99 as number);
    const rpcOver = (s.grpcP99 as number) - (s.floorH2P99 as number);
    const m11 = s.mtom11 as number;
    const m2 = s.mtom2 as number;
    const ok = (x: number, lim: number) => (Number.isFinite(x) ? x <= lim : undefined);
    out.push(
      `| ${s.shape} | ${n(cpuRatio)}${target ? ` (≤ ${target}: ${met(ok(cpuRatio, target))})` : ""} | ${Number.isFinite(instrRatio) ? `${n(instrRatio)} (${Math.round(s.instrPerCall as number).toLocaleString("en")} ÷ ${Math.round(s.floorInstrPerCall as number).toLocaleString("en")})${target ? ` (≤ ${target}: ${met(ok(instrRatio, target))})` : ""}` : "–"} | ${n(sendOver)} (${met(ok(sendOver, 5))}) | ${n(rpcOver)} (${met(ok(rpcOver, 5))}) | ${n(m11)}, ${n(m2)} (${met(ok(Math.max(m11, m2), 1.3))}) |`,
    );
  }
  out.push("");
  const text = `${out.join("\n")}\n`;
  process.stdout.write(`${out.slice(out.indexOf("## Targets (issue 25)")).join("\n")}\n`);
  if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, text);
  rmSync(dir, { recursive: true, force: true });
  if (failed) process.exitCode = 1;
}

const shapes = (process.env.BENCH_SHAPES ?? "").split(",").filter((x) => x);
(shapes.length ? runShapes(shapes) : main()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
