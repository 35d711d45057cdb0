/**
 * The multi-host rig: eProxy replicas, a balancer, a Redis Cluster (and a Sentinel set), FerretDB and
 * the simulators, each host in its own Linux network namespace; failure scenarios under a steady
 * relay load with CIBA logins in flight, measured.
 *
 *   npm run rig -- --full     every scenario, throughput 1/2/3 replicas, Redis commands per call;
 *                             writes the table into docs/operate/many-hosts.md
 *   npm run rig -- --short    CI's tier: kill -9 of a replica and a Redis Cluster master killed,
 *                             asserted
 *                             (exit 1 on a lost session, a lost trace or a duplicate push); the table
 *                             goes to .ci/out/rig.md
 *   --only NAME[,NAME]        run only these scenarios; RIG_RATE (relays/s, default 20),
 *                             RIG_LATENCY=0 (no netem), RIG_KEEP=1 (leave the rig up), RIG_VERBOSE=1
 *
 * Needs root (network namespaces); skips, saying so, where namespaces are not permitted.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { PROFESSIONALS } from "../../src/sandbox/professionals.ts";
import {
  CLIENT_IDS,
  type ClientId,
  type Deployment,
  deploy,
  getJson,
  redisCli,
  serverStat,
  serverStatus,
} from "./deployment.ts";
import {
  cpuSeconds,
  droppedOut,
  type Host,
  heal,
  ipOf,
  namespacesPermitted,
  partition,
  REDIS_HOSTS,
  REPLICAS,
  type Replica,
  setupNet,
  sleep,
  teardownNet,
  until,
} from "./infra.ts";
import { authOn, type HeldSession, LB_URL, Logins, RelayLoad, type RelayResult, relayOnce } from "./load.ts";

const argv = process.argv.slice(2);
const full = argv.includes("--full");
const only = argv.includes("--only") ? (argv[argv.indexOf("--only") + 1] ?? "").split(",") : undefined;
const RATE = Number(process.env.RIG_RATE ?? 20);
const COMMAND = `npm run rig -- ${full ? "--full" : "--short"}${only ? ` --only ${only.join(",")}` : ""}`;

interface Row {
  scenario: string;
  relays: string;
  failed: string;
  dupPushes: number;
  approvals: string;
  sessionsLost: string;
  tracesLost: string;
  recover: string;
  peerCalls: string;
  notes: string;
}

interface Ctx {
  d: Deployment;
  agent: https.Agent;
  sessions: HeldSession[];
  /** Replicas that should be serving now. */
  down: Set<Replica>;
}

interface Scenario {
  name: string;
  short: boolean;
  mode: "cluster" | "sentinel";
  /** Injects the fault (and heals it); returns when the fault happened and what the failing peer saw. */
  fault(c: Ctx): Promise<{
    at: number;
    healedAt?: number;
    peer: () => Promise<string>;
    notes?: string;
    /** Run once measured (a killed node restarted). */
    restore?: () => Promise<void>;
  }>;
}

const log = (s: string) => process.stdout.write(`[rig ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

/** Sum of a metric's samples on a replica's /metrics, optionally filtered by a label regexp. */
async function metric(r: Replica, name: string, labels?: RegExp): Promise<number> {
  const text = await new Promise<string>((resolve) => {
    import("node:http").then(({ default: http }) => {
      const req = http.get(`http://${ipOf(r)}:9090/metrics`, { timeout: 2_000 }, (res) => {
        let b = "";
        res.on("data", (d) => (b += d));
        res.on("end", () => resolve(b));
      });
      req.on("error", () => resolve(""));
      req.on("timeout", () => req.destroy());
    });
  });
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(\\{[^}]*\\})? ([\\d.e+-]+)$`, "gm"))) {
    if (labels && !labels.test(m[1] ?? "")) continue;
    sum += Number(m[2]);
  }
  return sum;
}

async function pscStats(d: Deployment): Promise<{ cibaRequests: number }> {
  return (await getJson(`https://${ipOf("sims")}:9443/control/stats`, d.ca)) ?? { cibaRequests: Number.NaN };
}

/** The correlation ids of the SEND traces of `client` in [start, end], through the public query. */
async function sendTraces(d: Deployment, client: ClientId, start: number, end: number): Promise<Set<string>> {
  const ids = new Set<string>();
  let token = "";
  for (let page = 0; page < 200; page++) {
    const q = new URLSearchParams({
      start: new Date(start).toISOString(),
      end: new Date(end).toISOString(),
      type: "SEND",
      pageSize: "1000",
      ...(token ? { pageToken: token } : {}),
    });
    const res = await new Promise<{ body: any; next: string }>((resolve) => {
      const req = https.get(
        `${LB_URL}/traces?${q}`,
        { ca: d.ca, agent: false, timeout: 15_000, headers: { "x-eproxy-api-key": d.keys[client] } },
        (r) => {
          let b = "";
          r.on("data", (c) => (b += c));
          r.on("end", () => {
            try {
              resolve({ body: JSON.parse(b), next: String(r.headers["x-next-page-token"] ?? "") });
            } catch {
              resolve({ body: [], next: "" });
            }
          });
        },
      );
      req.on("error", () => resolve({ body: [], next: "" }));
    });
    for (const t of Array.isArray(res.body) ? res.body : []) if (t.correlationId) ids.add(t.correlationId);
    if (!res.next) break;
    token = res.next;
  }
  return ids;
}

/** OK relays whose SEND trace the query does not return (retried for 20 s: writes are batched). */
async function tracesLost(d: Deployment, ok: RelayResult[], start: number, end: number): Promise<number> {
  let missing = ok.length;
  for (let i = 0; i < 10 && missing > 0; i++) {
    const found = new Set<string>();
    for (const c of CLIENT_IDS)
      for (const id of await sendTraces(d, c, start - 5_000, end + 60_000)) found.add(id);
    missing = ok.filter((r) => !found.has(r.correlationId)).length;
    if (missing > 0) await sleep(2_000);
  }
  return missing;
}

/** Each held session used once: how many the store no longer knows (SESSION_INVALID) and how many need a new login. */
async function sessionsCheck(c: Ctx): Promise<{ lost: number; reauth: number; other: string[] }> {
  let lost = 0;
  let reauth = 0;
  const other: string[] = [];
  const gone = new Set<HeldSession>();
  let i = 0;
  for (const s of c.sessions) {
    let code = "";
    // A transient failure (the balancer, a replica restarting) is retried: only the store's answer counts.
    for (let attempt = 0; attempt < 5; attempt++) {
      code = await relayOnce(c.agent, c.d.keys, s, `rig-check-${Date.now()}-${i++}`);
      if (code === "OK" || code === "SESSION_INVALID" || code === "REAUTHENTICATION_REQUIRED") break;
      await sleep(500);
    }
    if (code === "SESSION_INVALID") {
      lost++;
      gone.add(s);
    } else if (code === "REAUTHENTICATION_REQUIRED") reauth++;
    else if (code !== "OK") other.push(code);
  }
  // A caller whose session is gone logs in again: the lost ones leave the load.
  c.sessions = c.sessions.filter((s) => !gone.has(s));
  return { lost, reauth, other };
}

const count = (rs: RelayResult[]) => {
  const by: Record<string, number> = {};
  for (const r of rs) by[r.code] = (by[r.code] ?? 0) + 1;
  return by;
};

async function waitLbUp(d: Deployment, r: Replica, ms = 30_000): Promise<void> {
  await until(`HAProxy sees ${r} UP`, async () => serverStatus(await d.haproxy("show stat"), r) === "UP", ms);
}

/** Runs one scenario under load and measures it. */
async function runScenario(c: Ctx, s: Scenario): Promise<Row> {
  log(`scenario: ${s.name}`);
  const before = await pscStats(c.d);
  const tag = s.name.replace(/\W+/g, "-");
  const load = new RelayLoad(c.agent, c.d.keys, () => c.sessions, RATE, tag);
  const profs = Object.keys(PROFESSIONALS);
  const logins = new Logins(
    (r, client) => authOn(r, c.d.ca, c.d.keys[client]),
    () => REPLICAS.filter((r) => !c.down.has(r)),
    profs.map((nationalId, i) => ({ client: CLIENT_IDS[i % 2] as ClientId, nationalId })),
    1_000,
  );
  const start = Date.now();
  load.start();
  logins.start();
  await sleep(full ? 5_000 : 3_000);
  const f = await s.fault(c);
  await sleep(full ? 8_000 : 5_000);
  await load.stop();
  await logins.stop();
  const end = Date.now();
  const after = await pscStats(c.d);
  const peer = await f.peer();

  const results = load.results;
  const by = count(results);
  const ok = results.filter((r) => r.code === "OK");
  const failedAfter = results.filter((r) => r.code !== "OK" && r.at >= f.at);
  const lastFail = failedAfter.at(-1);
  const failedCodes = Object.entries(by)
    .filter(([k]) => k !== "OK")
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");

  const recs = logins.records;
  const fresh = recs.filter((r) => r.fresh).length;
  const pushes = after.cibaRequests - before.cibaRequests;
  const approved = recs.filter((r) => r.status === "APPROVED" && r.token);
  const otherReplica = approved.filter((r) => r.watchedOn && r.watchedOn !== r.startedOn).length;
  const notApproved = recs.filter((r) => !(r.status === "APPROVED" && r.token));
  for (const r of approved) c.sessions.push({ client: r.client, token: r.token as string });
  const check = await sessionsCheck(c);
  const lostTraces = await tracesLost(c.d, ok, start, end);
  await f.restore?.();
  const notesList = [f.notes ?? ""];
  const retriesNotReused = recs.filter((r) => r.retryReused === false).length;
  const withErrors = recs.filter((r) => r.errors.length);
  if (withErrors.length)
    log(
      `logins with errors: ${withErrors.map((r) => `${r.nationalId}/${r.client} fresh=${r.fresh} reused=${r.retryReused} ${r.status} [${r.errors.join(" ")}]`).join("; ")}`,
    );
  if (retriesNotReused) notesList.push(`${retriesNotReused} retried StartCiba not reused`);
  if (notApproved.length) {
    const why = count(
      notApproved.map((r) => ({
        at: 0,
        code: `${r.status}${r.errors.length ? `(${r.errors.at(-1)})` : ""}`,
        correlationId: "",
        client: r.client,
      })),
    );
    notesList.push(
      `logins not delivered: ${Object.entries(why)
        .map(([k, v]) => `${k} ×${v}`)
        .join(", ")}`,
    );
  }
  if (check.other.length) notesList.push(`session check answers: ${[...new Set(check.other)].join(", ")}`);
  const row: Row = {
    scenario: s.name,
    relays: `${ok.length}/${results.length}`,
    failed: failedCodes || "0",
    dupPushes: pushes - fresh,
    approvals: `${approved.length}/${recs.length} (${otherReplica} on another replica)`,
    sessionsLost: `${check.lost}${check.reauth ? ` (+${check.reauth} reauth)` : ""} of ${c.sessions.length + check.lost}`,
    tracesLost: `${lostTraces} of ${ok.length}`,
    recover: lastFail ? `${((lastFail.at - f.at) / 1000).toFixed(1)} s` : "0 s",
    peerCalls: peer,
    notes: notesList.filter(Boolean).join("; "),
  };
  log(JSON.stringify(row));
  return row;
}

/** The Proc of a Redis node given as host:port. */
function redisProc(d: Deployment, node: string) {
  const [ip, port] = node.split(":");
  const h = REDIS_HOSTS.find((k) => ipOf(k) === ip);
  return [...d.redis, ...d.sentinel].find((p) => p.name === `redis-${h}-${port}`);
}

async function storeErrors(): Promise<number> {
  let n = 0;
  for (const r of REPLICAS) n += await metric(r, "eproxy_store_errors_total");
  return n;
}

/**
 * Kills a Redis master with SIGKILL, waits (30 s at most) until `promotedWhen` holds, then lets the
 * load run 3 s more: when it was killed, the note on its promotion, and the replicas' store errors
 * meanwhile.
 */
async function killRedisMaster(
  p: ReturnType<typeof redisProc>,
  victim: string,
  awaited: string,
  promotedWhen: () => boolean,
): Promise<{ at: number; notes: string; peer: () => Promise<string> }> {
  const e0 = await storeErrors();
  const at = Date.now();
  await p?.stop("SIGKILL");
  await until(awaited, promotedWhen, 30_000);
  const promoted = Date.now();
  await sleep(3_000);
  const e1 = await storeErrors();
  return {
    at,
    notes: `killed ${victim}; promoted after ${((promoted - at) / 1000).toFixed(1)} s`,
    peer: async () => `store errors on the replicas: ${e1 - e0}`,
  };
}

/** A clock-skew scenario: r3 restarted with libfaketime `offset`, then some load on it. */
function clockSkew(offset: "+5s" | "-5s", notes: string): Scenario {
  return {
    name: `clock skew: r3 ${offset.replace(/s$/, " s")} (libfaketime)`,
    short: false,
    mode: "cluster",
    async fault(c) {
      c.down.add("r3");
      await c.d.replicas.r3.stop("SIGTERM", 20_000);
      const at = Date.now();
      await c.d.startReplica("r3", { faketime: offset });
      c.down.delete("r3");
      await waitLbUp(c.d, "r3");
      await sleep(full ? 15_000 : 8_000);
      return { at, notes, peer: async () => "-" };
    },
  };
}

const scenarios: Scenario[] = [
  {
    name: "kill -9 one replica (r1)",
    short: true,
    mode: "cluster",
    async fault(c) {
      const stat0 = await c.d.haproxy("show stat");
      const at = Date.now();
      await c.d.replicas.r1.stop("SIGKILL");
      c.down.add("r1");
      await sleep(full ? 10_000 : 6_000);
      const stat1 = await c.d.haproxy("show stat");
      await c.d.startReplica("r1");
      c.down.delete("r1");
      await waitLbUp(c.d, "r1");
      return {
        at,
        notes: "r1 restarted after the measure window",
        peer: async () =>
          `LB→r1 while down: ${serverStat(stat1, "r1", "stot") - serverStat(stat0, "r1", "stot")} sessions, ${
            serverStat(stat1, "r1", "econ") - serverStat(stat0, "r1", "econ")
          } connect errors, ${serverStat(stat1, "r1", "chkfail") - serverStat(stat0, "r1", "chkfail")} failed checks`,
      };
    },
  },
  {
    name: "Redis master killed (kill -9), replica promoted",
    short: true,
    mode: "cluster",
    async fault(c) {
      const masters = c.d.clusterMasters();
      const victim = masters[0] as string;
      const p = redisProc(c.d, victim);
      const killed = await killRedisMaster(
        p,
        victim,
        "a new master for the killed one's slots",
        () => c.d.clusterMasters().length === 3 && !c.d.clusterMasters().includes(victim),
      );
      return {
        ...killed,
        // Once measured, the old node comes back (empty: no persistence in the rig) and the cluster
        // makes it a replica of the promoted one. Restarted during the load, it answered its old slots
        // empty for a moment (it still believed itself their master): a rig artefact, not a failover's.
        restore: async () => {
          p?.start();
          await until(
            `${victim} back as a replica`,
            () => redisCli(victim, "role").startsWith("slave"),
            30_000,
          );
        },
      };
    },
  },
  {
    name: "CLUSTER FAILOVER (manual, graceful)",
    short: false,
    mode: "cluster",
    async fault(c) {
      // A replica of the first master takes over.
      const master = c.d.clusterMasters()[0] as string;
      let replica = "";
      for (const n of c.d.redis.map((p) => p.name)) {
        const m = /redis-(k\d)-(\d+)/.exec(n);
        if (!m) continue;
        const node = `${ipOf(m[1] as Host)}:${m[2]}`;
        const info = redisCli(node, "info", "replication");
        if (
          info.includes("role:slave") &&
          info.includes(`master_host:${master.split(":")[0]}`) &&
          info.includes(`master_port:${master.split(":")[1]}`)
        )
          replica = node;
      }
      const e0 = await storeErrors();
      const at = Date.now();
      redisCli(replica, "cluster", "failover");
      await until("the replica promoted", () => c.d.clusterMasters().includes(replica), 20_000);
      await sleep(2_000);
      const e1 = await storeErrors();
      return {
        at,
        notes: `${replica} took over from ${master}`,
        peer: async () => `store errors on the replicas: ${e1 - e0}`,
      };
    },
  },
  {
    name: "partition r2 from Redis (8 s)",
    short: false,
    mode: "cluster",
    async fault(c) {
      const e0 = await metric("r2", "eproxy_store_errors_total");
      const at = Date.now();
      partition("r2", [...REDIS_HOSTS]);
      await sleep(8_000);
      const lb = serverStatus(await c.d.haproxy("show stat"), "r2");
      const dropped = droppedOut("r2");
      heal("r2");
      const healedAt = Date.now();
      await waitLbUp(c.d, "r2");
      const e1 = await metric("r2", "eproxy_store_errors_total");
      return {
        at,
        healedAt,
        notes: `r2 at the balancer during the partition: ${lb}; back UP ${((Date.now() - healedAt) / 1000).toFixed(1)} s after healing`,
        peer: async () => `r2→Redis: ${dropped} packets dropped; r2's store errors: ${e1 - e0}`,
      };
    },
  },
  {
    name: "partition r3 from PSC (8 s)",
    short: false,
    mode: "cluster",
    async fault(c) {
      const bad = /outcome="(?!ok|pending|approved|slow_down|denied|expired|refused)/;
      const p0 = await metric("r3", "eproxy_psc_request_duration_seconds_count", bad);
      const at = Date.now();
      partition("r3", ["sims"], 9443);
      await sleep(8_000);
      const lb = serverStatus(await c.d.haproxy("show stat"), "r3");
      const dropped = droppedOut("r3");
      heal("r3");
      const p1 = await metric("r3", "eproxy_psc_request_duration_seconds_count", bad);
      return {
        at,
        healedAt: Date.now(),
        notes: `r3 at the balancer during the partition: ${lb} (PSC only degrades readiness)`,
        peer: async () => `r3→PSC: ${dropped} packets dropped; r3's failed PSC calls: ${p1 - p0}`,
      };
    },
  },
  {
    name: "rolling restart (SIGTERM, drain) of r1, r2, r3",
    short: false,
    mode: "cluster",
    async fault(c) {
      const at = Date.now();
      for (const r of REPLICAS) {
        c.down.add(r);
        await c.d.replicas[r].stop("SIGTERM", 20_000);
        await c.d.startReplica(r);
        c.down.delete(r);
        await waitLbUp(c.d, r);
      }
      return { at, notes: `${((Date.now() - at) / 1000).toFixed(0)} s for the three`, peer: async () => "-" };
    },
  },
  clockSkew("+5s", "r3 restarted with FAKETIME=+5s (wall clock only), back to true time after the scenario"),
  clockSkew("-5s", "r3 restarted with FAKETIME=-5s"),
  {
    name: "Sentinel failover (SENTINEL FAILOVER)",
    short: false,
    mode: "sentinel",
    async fault() {
      const e0 = await storeErrors();
      const sentinel = `${ipOf("k2")}:26379`;
      const old = redisCli(sentinel, "sentinel", "get-master-addr-by-name", "rigm").split("\n")[0];
      const at = Date.now();
      redisCli(sentinel, "sentinel", "failover", "rigm");
      await until(
        "a new Sentinel master",
        () => redisCli(sentinel, "sentinel", "get-master-addr-by-name", "rigm").split("\n")[0] !== old,
        30_000,
      );
      const now = redisCli(sentinel, "sentinel", "get-master-addr-by-name", "rigm").split("\n")[0];
      await sleep(3_000);
      const e1 = await storeErrors();
      return {
        at,
        notes: `master ${old} → ${now} after ${((Date.now() - 3_000 - at) / 1000).toFixed(1)} s`,
        peer: async () => `store errors on the replicas: ${e1 - e0}`,
      };
    },
  },
  {
    name: "Sentinel master killed (kill -9)",
    short: false,
    mode: "sentinel",
    async fault(c) {
      const sentinel = `${ipOf("k3")}:26379`;
      const master = () => redisCli(sentinel, "sentinel", "get-master-addr-by-name", "rigm").split("\n")[0];
      const old = master() as string;
      const p = c.d.sentinel.find((s) => s.name === `redis-${REDIS_HOSTS.find((h) => ipOf(h) === old)}-6379`);
      const killed = await killRedisMaster(p, old, "a new Sentinel master", () => master() !== old);
      return {
        ...killed,
        restore: async () => {
          p?.start();
        },
      };
    },
  },
];

/** Relays per second through the balancer with 1, 2 and 3 replicas in rotation, and CPU per call. */
async function throughput(c: Ctx): Promise<string[]> {
  const lines: string[] = [];
  const seconds = Number(process.env.RIG_TPUT_SECONDS ?? (full ? 10 : 5));
  const concurrency = 16;
  let base = 0;
  for (const n of [1, 2, 3]) {
    for (const [i, r] of REPLICAS.entries()) {
      await c.d.haproxy(`${i < n ? "enable" : "disable"} server be/${r}`);
    }
    await sleep(1_500);
    const agent = new https.Agent({ keepAlive: true, maxSockets: concurrency, ca: c.d.ca });
    const cpu0 = REPLICAS.map((r) => cpuSeconds(c.d.replicas[r].pid));
    const end = Date.now() + seconds * 1000;
    let ok = 0;
    let failed = 0;
    let k = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < end) {
          const s = c.sessions[k++ % c.sessions.length] as HeldSession;
          const code = await relayOnce(agent, c.d.keys, s, `rig-tput-${n}-${k}`);
          if (code === "OK") ok++;
          else failed++;
        }
      }),
    );
    agent.destroy();
    const cpu = REPLICAS.map((r, i) => cpuSeconds(c.d.replicas[r].pid) - (cpu0[i] ?? 0));
    const total = cpu.reduce((a, b) => a + b, 0);
    const rate = ok / seconds;
    if (n === 1) base = rate;
    lines.push(
      `| ${n} | ${rate.toFixed(0)} | ${(rate / base).toFixed(2)} | ${((total / Math.max(ok, 1)) * 1000).toFixed(2)} | ${cpu
        .slice(0, n)
        .map((x) => x.toFixed(1))
        .join(" / ")} | ${failed} |`,
    );
    log(`throughput ${n} replica(s): ${rate.toFixed(0)} relays/s, ${failed} failed`);
  }
  for (const r of REPLICAS) await c.d.haproxy(`enable server be/${r}`);
  return lines;
}

/** Redis commands (INFO commandstats on the cluster's nodes) per relay and per CIBA login. */
async function redisCommands(c: Ctx): Promise<string[]> {
  const nodes = [7001, 7002].flatMap((p) => REDIS_HOSTS.map((h) => `${ipOf(h)}:${p}`));
  const masters = () => c.d.clusterMasters();
  const diff = (a: Record<string, number>, b: Record<string, number>) => {
    const out: Record<string, number> = {};
    for (const k of Object.keys(b)) if ((b[k] ?? 0) - (a[k] ?? 0) > 0) out[k] = (b[k] ?? 0) - (a[k] ?? 0);
    // Redis's own traffic (replication, health pings, the rig's INFO), not eProxy's.
    for (const k of ["info", "cluster", "replconf", "ping", "command", "client", "config", "role"])
      delete out[k];
    return out;
  };
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: c.d.ca });
  // Background (health checks, CIBA leases): measured idle over the same time as the calls.
  const idle0 = c.d.commandStats(masters());
  const t0 = Date.now();
  const n = 200;
  for (let i = 0; i < n; i++)
    await relayOnce(agent, c.d.keys, c.sessions[i % c.sessions.length] as HeldSession, `rig-cmd-${i}`);
  const dt = Date.now() - t0;
  const relay1 = c.d.commandStats(masters());
  await sleep(dt);
  const idle1 = c.d.commandStats(masters());
  const bg = diff(relay1, idle1);
  const relays = diff(idle0, relay1);
  const perRelay = Object.entries(relays)
    .map(([k, v]) => [k, (v - (bg[k] ?? 0)) / n] as const)
    .filter(([, v]) => v > 0.05)
    .sort((a, b) => b[1] - a[1]);
  // Logins: one at a time, each started and watched to its end.
  const logins = new Logins(
    (r, client) => authOn(r, c.d.ca, c.d.keys[client]),
    () => [...REPLICAS],
    [],
    0,
  );
  const l0 = c.d.commandStats(masters());
  const t1 = Date.now();
  const profs = Object.keys(PROFESSIONALS);
  const m = 6;
  for (let i = 0; i < m; i++)
    await logins.loginOnce(CLIENT_IDS[i % 2] as ClientId, profs[i % profs.length] as string);
  const l1 = c.d.commandStats(masters());
  const dt2 = Date.now() - t1;
  const bgRate = Object.fromEntries(Object.entries(bg).map(([k, v]) => [k, (v / dt) * dt2]));
  const perLogin = Object.entries(diff(l0, l1))
    .map(([k, v]) => [k, (v - (bgRate[k] ?? 0)) / m] as const)
    .filter(([, v]) => v > 0.05)
    .sort((a, b) => b[1] - a[1]);
  void nodes;
  const fmt = (xs: ReadonlyArray<readonly [string, number]>) =>
    `${xs.reduce((a, [, v]) => a + v, 0).toFixed(1)} (${xs.map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")})`;
  agent.destroy();
  return [
    `- per relayed call (${n} calls, one at a time, idle background subtracted): ${fmt(perRelay)}`,
    `- per CIBA login (${m} logins: start, a retried start on another replica, a watch on a third; background subtracted): ${fmt(perLogin)}`,
  ];
}

function table(rows: Row[]): string {
  const head =
    "| scenario | relays OK/sent | failed (by code) | duplicate pushes | CIBA approvals delivered | sessions lost | traces lost | last failure after fault | calls to the failing peer | notes |\n|---|---|---|---|---|---|---|---|---|---|";
  return [
    head,
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.relays} | ${r.failed} | ${r.dupPushes} | ${r.approvals} | ${r.sessionsLost} | ${r.tracesLost} | ${r.recover} | ${r.peerCalls} | ${r.notes.replaceAll("|", "/")} |`,
    ),
  ].join("\n");
}

async function main(): Promise<number> {
  const permitted = namespacesPermitted();
  if (!permitted.ok) {
    log(`SKIPPED: the multi-host rig needs Linux network namespaces (${permitted.reason})`);
    return 0;
  }
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-rig-"));
  log(`run directory ${dir} (logs in ${dir}/logs)`);
  const net = setupNet(process.env.RIG_LATENCY !== "0");
  log(`network: ${net.latency}`);
  let d: Deployment | undefined;
  const rows: Row[] = [];
  const extra: string[] = [];
  const failures: string[] = [];
  try {
    d = await deploy(dir, "cluster");
    log("deployed: 3 replicas, HAProxy, Redis Cluster 3+3, Sentinel 1+2 (3 sentinels), FerretDB, simulators");
    // FIFO: the load spreads over its connections (and so over the replicas behind the balancer).
    const agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca: d.ca, scheduling: "fifo" });
    writeFileSync(path.join(dir, "api-keys.json"), JSON.stringify(d.keys));
    const c: Ctx = { d, agent, sessions: [], down: new Set() };
    // Sessions held by the callers: one per (client, professional), logged in through the replicas.
    const profs = Object.keys(PROFESSIONALS);
    const dep = d;
    const setup = new Logins(
      (r, client) => authOn(r, dep.ca, dep.keys[client]),
      () => [...REPLICAS],
      [],
      0,
    );
    for (const client of CLIENT_IDS)
      for (const p of profs) {
        const rec = await setup.loginOnce(client, p);
        if (rec.token) c.sessions.push({ client, token: rec.token });
      }
    log(`${c.sessions.length} sessions held`);
    if (full) {
      extra.push("### Redis commands per call (cluster mode)", "", ...(await redisCommands(c)), "");
      extra.push(
        "### Throughput through the balancer (this 2-core machine, everything on it)",
        "",
        "| replicas in rotation | relays/s | ratio to 1 | eProxy CPU ms per call | CPU s per replica | failed |",
        "|---|---|---|---|---|---|",
        ...(await throughput(c)),
        "",
      );
    }
    for (const s of scenarios) {
      if (only ? !only.some((o) => s.name.includes(o)) : !full && !s.short) continue;
      if (d.mode !== s.mode) {
        log(`switching the replicas to ${s.mode} mode`);
        await d.switchMode(s.mode);
        // Sessions are in the other store now: log in again.
        c.sessions = [];
        for (const client of CLIENT_IDS)
          for (const p of profs) {
            const rec = await setup.loginOnce(client, p);
            if (rec.token) c.sessions.push({ client, token: rec.token });
          }
      }
      const row = await runScenario(c, s);
      rows.push(row);
      if (s.short) {
        if (row.dupPushes !== 0) failures.push(`${s.name}: ${row.dupPushes} duplicate pushes`);
        if (!row.sessionsLost.startsWith("0")) failures.push(`${s.name}: sessions lost ${row.sessionsLost}`);
        if (!row.tracesLost.startsWith("0 ")) failures.push(`${s.name}: traces lost ${row.tracesLost}`);
        if (row.approvals.startsWith("0/")) failures.push(`${s.name}: no CIBA approval delivered`);
      }
    }
  } catch (err) {
    failures.push(`rig error: ${(err as Error).stack ?? err}`);
  } finally {
    if (process.env.RIG_HOLD) {
      log(`holding the rig up for ${process.env.RIG_HOLD} s`);
      await sleep(Number(process.env.RIG_HOLD) * 1000);
    }
    if (process.env.RIG_KEEP !== "1") {
      await d?.stop().catch(() => {});
      teardownNet();
    }
  }
  const out = [
    `Produced by \`${COMMAND}\` on ${new Date().toISOString().slice(0, 16)}Z (relay load ${RATE}/s; latency: ${net.latency}).`,
    "",
    table(rows),
    "",
    ...extra,
  ].join("\n");
  if (full && !only) {
    const doc = path.resolve("docs/operate/many-hosts.md");
    const text = readFileSync(doc, "utf8");
    const a = text.indexOf("<!-- rig:begin -->");
    const b = text.indexOf("<!-- rig:end -->");
    writeFileSync(doc, `${text.slice(0, a + "<!-- rig:begin -->".length)}\n${out}\n${text.slice(b)}`);
    log(`table written to ${doc}`);
  } else {
    mkdirSync(path.resolve(".ci/out"), { recursive: true });
    const file = path.resolve(".ci/out/rig.md");
    writeFileSync(file, `${out}\n`);
    log(`table written to ${file}`);
  }
  process.stdout.write(`\n${out}\n`);
  for (const f of failures) log(`FAILED: ${f}`);
  return failures.length ? 1 : 0;
}

// Ctrl-C / SIGTERM: the processes and namespaces go too.
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    log(`${sig}: tearing the rig down`);
    teardownNet();
    process.exit(130);
  });
}
process.exitCode = await main();
process.exit();
