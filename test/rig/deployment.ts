/**
 * What runs on the rig's hosts: a Redis Cluster (3 masters + 3 replicas on k1–k3, ports 7001/7002)
 * and a Sentinel set (master + 2 replicas on port 6379, 3 sentinels on 26379, same hosts), FerretDB
 * on db, the simulators on sims, HAProxy on lb (TCP, health checks on /readyz over TLS), and the
 * eProxy replicas r1–r3. Each started in its namespace by `ip netns exec`.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { createApiKey } from "../../src/auth/api-keys.ts";
import { ensureDevPki } from "../../src/infra/dev-pki.ts";
import {
  ensureDir,
  type Host,
  ipOf,
  Proc,
  REDIS_HOSTS,
  REPLICAS,
  type Replica,
  rigServerCert,
  run,
  sleep,
  until,
} from "./infra.ts";

export const CLIENT_IDS = ["lps-demo", "lps-other"] as const;
export type ClientId = (typeof CLIENT_IDS)[number];
const NODE = path.resolve("node_modules/.bin/node");
const FERRET = [path.resolve(".ci/bin/ferretdb"), "/work/main/.ci/bin/ferretdb"];

/** Which Redis deployment the replicas use. */
export type StoreMode = "cluster" | "sentinel";

export interface Deployment {
  dir: string;
  ca: string;
  keys: Record<ClientId, string>;
  replicas: Record<Replica, Proc>;
  redis: Proc[];
  sentinel: Proc[];
  mode: StoreMode;
  /** Starts (or restarts) a replica and waits for its /readyz; `faketime` shifts its clock (libfaketime). */
  startReplica(r: Replica, opts?: { faketime?: string }): Promise<void>;
  /** Restarts every replica on another store mode. */
  switchMode(mode: StoreMode): Promise<void>;
  /** HAProxy's runtime API (`show stat`, `disable server be/r2`, ...). */
  haproxy(command: string): Promise<string>;
  /** The Redis Cluster's masters now (host:port). */
  clusterMasters(): string[];
  /** INFO commandstats summed over the given nodes (calls per command). */
  commandStats(nodes: string[]): Record<string, number>;
  /** Stops every process. */
  stop(): Promise<void>;
}

const ENC_ENV = "EPROXY_RIG_ENCRYPTION_KEY";
const MONGO_URL = `mongodb://${ipOf("db")}:27017/eproxy-rig`;

function redisArgs(h: Host, port: number, dir: string, extra: string[]): string[] {
  return [
    "--bind",
    ipOf(h),
    "--port",
    String(port),
    "--protected-mode",
    "no",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    ...extra,
  ];
}

export function redisCli(node: string, ...args: string[]): string {
  const [host = "", port = ""] = node.split(":");
  return run("redis-cli", ["-h", host, "-p", port, ...args], { allowFail: true }).trim();
}

/** Starts everything but the replicas' load; the replicas start ready. */
export async function deploy(dir: string, mode: StoreMode): Promise<Deployment> {
  const pkiDir = ensureDir(path.join(dir, "pki"));
  const pki = await ensureDevPki(pkiDir, CLIENT_IDS);
  rigServerCert(pkiDir);
  const ca = readFileSync(pki.ca.certFile, "utf8");
  const logs = ensureDir(path.join(dir, "logs"));
  const procs: Proc[] = [];
  const proc = (name: string, host: Host, cmd: string, args: string[], env?: NodeJS.ProcessEnv) => {
    const p = new Proc(name, host, cmd, args, path.join(logs, `${name}.log`), env).start();
    procs.push(p);
    return p;
  };

  // Redis Cluster: a master and a replica per Redis host; redis-cli places replicas on other hosts.
  const redis: Proc[] = [];
  const clusterNodes: string[] = [];
  for (const port of [7001, 7002]) {
    for (const h of REDIS_HOSTS) {
      const d = ensureDir(path.join(dir, "redis", `${h}-${port}`));
      redis.push(
        proc(`redis-${h}-${port}`, h, "redis-server", [
          ...redisArgs(h, port, d, [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            path.join(d, "nodes.conf"),
            "--cluster-node-timeout",
            "1500",
          ]),
        ]),
      );
      clusterNodes.push(`${ipOf(h)}:${port}`);
    }
  }
  // Sentinel: k1 master, k2 and k3 replicas, a sentinel on each.
  const sentinel: Proc[] = [];
  for (const h of REDIS_HOSTS) {
    const d = ensureDir(path.join(dir, "redis", `${h}-6379`));
    sentinel.push(
      proc(
        `redis-${h}-6379`,
        h,
        "redis-server",
        redisArgs(h, 6379, d, h === "k1" ? [] : ["--replicaof", ipOf("k1"), "6379"]),
      ),
    );
    const conf = path.join(d, "sentinel.conf");
    writeFileSync(
      conf,
      [
        `bind ${ipOf(h)}`,
        "port 26379",
        "protected-mode no",
        `dir ${d}`,
        `sentinel monitor rigm ${ipOf("k1")} 6379 2`,
        "sentinel down-after-milliseconds rigm 1500",
        "sentinel failover-timeout rigm 6000",
        "sentinel parallel-syncs rigm 1",
        "",
      ].join("\n"),
    );
    sentinel.push(proc(`sentinel-${h}`, h, "redis-server", [conf, "--sentinel"]));
  }
  await until("Redis nodes", () => clusterNodes.every((n) => redisCli(n, "ping") === "PONG"), 20_000);
  run("redis-cli", ["--cluster", "create", ...clusterNodes, "--cluster-replicas", "1", "--cluster-yes"]);
  await until(
    "cluster_state:ok",
    () => clusterNodes.every((n) => redisCli(n, "cluster", "info").includes("cluster_state:ok")),
    30_000,
  );

  // FerretDB (traces) on db.
  const ferret = FERRET.find((f) => {
    try {
      run(f, ["--version"]);
      return true;
    } catch {
      return false;
    }
  });
  if (!ferret) throw new Error("FerretDB not built: run bash .ci/install-ferretdb.sh");
  const fdir = ensureDir(path.join(dir, "ferretdb"));
  proc(
    "ferretdb",
    "db",
    ferret,
    [
      "--handler=sqlite",
      `--sqlite-url=file:${fdir}/`,
      `--listen-addr=${ipOf("db")}:27017`,
      `--state-dir=${fdir}`,
      "--log-level=error",
      "--debug-addr=-",
    ],
    { ...process.env, FERRETDB_TELEMETRY: "disable" },
  );

  // The simulators on sims.
  proc("sims", "sims", NODE, [
    "test/rig/sims.ts",
    ipOf("sims"),
    pkiDir,
    "9443",
    "9444",
    CLIENT_IDS.join(","),
  ]);
  const simsUrl = `https://${ipOf("sims")}`;
  await until(
    "simulators",
    async () => (await getJson(`${simsUrl}:9443/control/stats`, ca)) !== undefined,
    30_000,
  );
  await until("FerretDB", () => tcpOpen(ipOf("db"), 27017), 20_000);

  // eProxy replicas.
  const keys = Object.fromEntries(CLIENT_IDS.map((id) => [id, createApiKey()])) as Record<
    ClientId,
    { key: string; hash: string }
  >;
  const encKey = randomBytes(32).toString("base64");
  const configFor = (r: Replica, m: StoreMode) => {
    const file = path.join(dir, `eproxy-${r}-${m}.json`);
    const sessions =
      m === "cluster"
        ? { kind: "redis", url: "redis://rig", clusterNodes, commandTimeoutMs: 1_000 }
        : {
            kind: "redis",
            url: "redis://rig",
            sentinel: { name: "rigm", nodes: REDIS_HOSTS.map((h) => `${ipOf(h)}:26379`) },
            commandTimeoutMs: 1_000,
          };
    const config = {
      server: {
        listenAddress: ipOf(r),
        port: 8443,
        publicBaseUrl: `https://${ipOf("lb")}:8443`,
        tls: { certFile: path.join(pkiDir, "rig-server.pem"), keyFile: path.join(pkiDir, "rig-server.key") },
        workers: 1,
        // The balancer checks /readyz every 500 ms and needs two failures: 1.5 s of not-ready
        // before the listener closes lets it take the replica out first.
        drainDelayMs: 1_500,
        shutdownGraceMs: 5_000,
      },
      psc: {
        discoveryUrl: `${simsUrl}:9443/auth/realms/esante-wallet/.well-known/wallet-openid-configuration`,
        caFile: pki.ca.certFile,
        timeoutMs: 3_000,
      },
      clients: CLIENT_IDS.map((id) => ({
        id,
        certFile: pki.clients[id]?.certFile,
        keyFile: pki.clients[id]?.keyFile,
        apiKeyHashes: [keys[id].hash],
        allowedServices: ["insi"],
        maxPendingCiba: 100,
      })),
      teleservices: [
        {
          name: "insi",
          upstreamUrl: `${simsUrl}:9444/insi`,
          caFile: pki.ca.certFile,
          tokenExchange: { endpoint: `${simsUrl}:9444/as/token`, scope: "insi" },
          connectTimeoutMs: 2_000,
        },
      ],
      stores: {
        sessions,
        encryption: { keys: [{ id: "rig", env: ENC_ENV }], activeKeyId: "rig" },
        mongodbUrl: MONGO_URL,
      },
      stateDir: ensureDir(path.join(dir, "state", r)),
      admin: { listenAddress: ipOf(r), port: 9090 },
      alerts: {
        cibaFailures: { max: 1000, windowSeconds: 60, block: false },
        relaysPerSession: { max: 100000, windowSeconds: 60, block: false },
      },
      log: { level: "warn" },
    };
    writeFileSync(file, JSON.stringify(config, null, 2));
    return file;
  };

  let currentMode = mode;
  const replicas = {} as Record<Replica, Proc>;
  const startReplica = async (r: Replica, opts: { faketime?: string } = {}) => {
    const env: NodeJS.ProcessEnv = { ...process.env, [ENC_ENV]: encKey };
    if (opts.faketime) {
      env.LD_PRELOAD = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
      env.FAKETIME = opts.faketime;
      env.FAKETIME_DONT_FAKE_MONOTONIC = "1";
      env.DONT_FAKE_MONOTONIC = "1";
    }
    const p = new Proc(
      `eproxy-${r}`,
      r,
      NODE,
      ["bin/eproxy.js", "serve", "--config", configFor(r, currentMode)],
      path.join(logs, `eproxy-${r}.log`),
      env,
    ).start();
    replicas[r] = p;
    await until(
      `${r} ready`,
      async () => (await status(`https://${ipOf(r)}:8443/readyz`, ca)) === 200,
      40_000,
    );
  };
  // The PSC simulator's discovery path: read it from the simulator itself.
  await Promise.all(REPLICAS.map((r) => startReplica(r)));

  // HAProxy on lb.
  const sock = path.join(dir, "haproxy.sock");
  const cfg = path.join(dir, "haproxy.cfg");
  writeFileSync(
    cfg,
    `global
  stats socket ${sock} mode 600 level admin
  maxconn 4000
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout check 1s
  retries 2
  option redispatch
frontend fe
  bind ${ipOf("lb")}:8443
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server check check-ssl verify none inter 500 fall 2 rise 2 on-marked-down shutdown-sessions
${REPLICAS.map((r) => `  server ${r} ${ipOf(r)}:8443`).join("\n")}
`,
  );
  proc("haproxy", "lb", "haproxy", ["-f", cfg, "-db"]);
  const haproxy = (command: string) =>
    new Promise<string>((resolve, reject) => {
      const s = net.connect(sock);
      let out = "";
      s.on("data", (d) => (out += d.toString()));
      s.on("end", () => resolve(out));
      s.on("error", reject);
      s.end(`${command}\n`);
    });
  await until("HAProxy", () => tcpOpen(ipOf("lb"), 8443), 20_000);
  await until(
    "HAProxy sees every replica UP",
    async () => {
      const csv = await haproxy("show stat");
      return REPLICAS.every((r) => serverStatus(csv, r) === "UP");
    },
    20_000,
  );

  return {
    dir,
    ca,
    keys: { "lps-demo": keys["lps-demo"].key, "lps-other": keys["lps-other"].key },
    replicas,
    redis,
    sentinel,
    get mode() {
      return currentMode;
    },
    startReplica,
    async switchMode(m) {
      currentMode = m;
      await Promise.all(REPLICAS.map((r) => replicas[r].stop("SIGTERM")));
      await Promise.all(REPLICAS.map((r) => startReplica(r)));
      await until(
        "HAProxy sees every replica UP",
        async () => {
          const csv = await haproxy("show stat");
          return REPLICAS.every((r) => serverStatus(csv, r) === "UP");
        },
        20_000,
      );
    },
    haproxy,
    clusterMasters() {
      for (const n of clusterNodes) {
        const out = redisCli(n, "cluster", "nodes");
        if (!out) continue;
        return out
          .split("\n")
          .filter((l) => /\bmaster\b/.test(l) && !/\bfail\b/.test(l) && / \d+-\d+/.test(l))
          .map((l) => (l.split(" ")[1] ?? "").split("@")[0] as string);
      }
      return [];
    },
    commandStats(nodes) {
      const total: Record<string, number> = {};
      for (const n of nodes) {
        for (const m of redisCli(n, "info", "commandstats").matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) {
          total[m[1] as string] = (total[m[1] as string] ?? 0) + Number(m[2]);
        }
      }
      return total;
    },
    async stop() {
      await Promise.all(procs.concat(Object.values(replicas)).map((p) => p.stop("SIGTERM", 8_000)));
    },
  };
}

/** A server's status (UP, DOWN, MAINT, ...) in HAProxy's `show stat` CSV. */
export function serverStatus(csv: string, server: string): string | undefined {
  const header = csv.split("\n")[0]?.replace(/^# /, "").split(",") ?? [];
  const i = header.indexOf("status");
  const line = csv.split("\n").find((l) => l.startsWith(`be,${server},`));
  return line?.split(",")[i];
}

/** A field of a server's `show stat` line as a number. */
export function serverStat(csv: string, server: string, field: string): number {
  const header = csv.split("\n")[0]?.replace(/^# /, "").split(",") ?? [];
  const i = header.indexOf(field);
  const line = csv.split("\n").find((l) => l.startsWith(`be,${server},`));
  return Number(line?.split(",")[i] ?? 0) || 0;
}

export function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1_000 });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** HTTP status of a GET (0 when unreachable). */
export function status(url: string, ca: string): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca, agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", () => resolve(0));
    req.on("timeout", () => req.destroy());
  });
}

export function getJson(url: string, ca: string, headers: Record<string, string> = {}): Promise<any> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca, agent: false, timeout: 5_000, headers }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        try {
          resolve(res.statusCode === 200 ? JSON.parse(body) : undefined);
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on("error", () => resolve(undefined));
    req.on("timeout", () => req.destroy());
  });
}

export { sleep };
