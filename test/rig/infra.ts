/**
 * The multi-host rig's machinery: Linux network namespaces on one bridge (one namespace per host),
 * partitions with nftables, latency with `tc netem` where the kernel has it, and the processes each
 * host runs (Redis Cluster and Sentinel nodes, FerretDB, HAProxy, the simulators, eProxy replicas).
 * Every command the rig runs goes through `run()` and is echoed with RIG_VERBOSE=1.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export const BRIDGE = "rigbr0";
export const ROOT_IP = "10.99.0.1";
/** The rig's hosts and their last address byte. */
export const HOSTS = {
  lb: 5,
  r1: 11,
  r2: 12,
  r3: 13,
  k1: 21,
  k2: 22,
  k3: 23,
  db: 30,
  sims: 40,
} as const;
export type Host = keyof typeof HOSTS;
export const ipOf = (h: Host): string => `10.99.0.${HOSTS[h]}`;
export const nsOf = (h: Host): string => `rig-${h}`;
export const REPLICAS = ["r1", "r2", "r3"] as const;
export type Replica = (typeof REPLICAS)[number];
export const REDIS_HOSTS = ["k1", "k2", "k3"] as const;

const verbose = process.env.RIG_VERBOSE === "1";

/** Runs a command to its end; its standard output. Throws on failure unless `allowFail`. */
export function run(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string } = {}): string {
  if (verbose) process.stderr.write(`$ ${cmd} ${args.join(" ")}\n`);
  try {
    return execFileSync(cmd, args, {
      encoding: "utf8",
      stdio: ["pipe", "pipe", "pipe"],
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      timeout: 30_000,
    });
  } catch (err) {
    if (opts.allowFail) return "";
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Runs a command inside a host's namespace. */
export const inNs = (h: Host, cmd: string, args: string[], opts?: { allowFail?: boolean }) =>
  run("ip", ["netns", "exec", nsOf(h), cmd, ...args], opts);

/** Whether this machine lets us create network namespaces (root, CAP_NET_ADMIN, no seccomp veto). */
export function namespacesPermitted(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== "linux") return { ok: false, reason: "not Linux" };
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return { ok: false, reason: "the `ip` command (iproute2) is missing" };
  }
  try {
    execFileSync("ip", ["netns", "add", "rig-probe"], { stdio: "pipe" });
    execFileSync("ip", ["netns", "exec", "rig-probe", "ip", "link", "set", "lo", "up"], { stdio: "pipe" });
    execFileSync("ip", ["netns", "del", "rig-probe"], { stdio: "pipe" });
    return { ok: true };
  } catch (err) {
    const e = err as { stderr?: Buffer };
    return { ok: false, reason: `network namespaces not permitted: ${e.stderr?.toString().trim() ?? err}` };
  }
}

/** Removes everything the rig created (namespaces, the bridge); safe to call when nothing exists. */
export function teardownNet(): void {
  const list = run("ip", ["netns", "list"], { allowFail: true });
  for (const h of Object.keys(HOSTS) as Host[]) {
    if (!new RegExp(`^${nsOf(h)}\\b`, "m").test(list)) continue;
    // What a previous run left running in the rig's own namespaces (RIG_KEEP, a crash) goes first.
    for (const pid of run("ip", ["netns", "pids", nsOf(h)], { allowFail: true })
      .split("\n")
      .filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
    run("ip", ["netns", "del", nsOf(h)], { allowFail: true });
  }
  for (const h of Object.keys(HOSTS) as Host[]) run("ip", ["link", "del", `rv-${h}`], { allowFail: true });
  run("ip", ["link", "del", BRIDGE], { allowFail: true });
}

/**
 * One namespace per host on a bridge, 10.99.0.0/24; the rig's driver (load, measures) stays in the
 * root namespace at 10.99.0.1. Latency: `tc netem` on each host's interface (1–10 ms) when the kernel
 * has sch_netem; the answer says what was applied.
 */
export function setupNet(latency: boolean): { latency: string } {
  teardownNet();
  run("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  run("ip", ["addr", "add", `${ROOT_IP}/24`, "dev", BRIDGE]);
  run("ip", ["link", "set", BRIDGE, "up"]);
  let netem = latency;
  const applied: string[] = [];
  for (const h of Object.keys(HOSTS) as Host[]) {
    const ns = nsOf(h);
    const veth = `rv-${h}`;
    run("ip", ["netns", "add", ns]);
    run("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    run("ip", ["link", "set", veth, "master", BRIDGE, "up"]);
    inNs(h, "ip", ["addr", "add", `${ipOf(h)}/24`, "dev", "eth0"]);
    inNs(h, "ip", ["link", "set", "eth0", "up"]);
    inNs(h, "ip", ["link", "set", "lo", "up"]);
    if (netem) {
      // 1–10 ms one way from each host, so 2–20 ms round trips between two hosts.
      const ms = 1 + (HOSTS[h] % 10);
      try {
        execFileSync(
          "ip",
          ["netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", `${ms}ms`],
          {
            stdio: "pipe",
          },
        );
        applied.push(`${h} ${ms} ms`);
      } catch {
        netem = false;
      }
    }
  }
  return {
    latency: !latency
      ? "none (RIG_LATENCY=0)"
      : netem
        ? `tc netem one way: ${applied.join(", ")}`
        : "none: this kernel has no sch_netem (tc netem unavailable); hosts talk over the bridge at veth speed",
  };
}

/**
 * Cuts `h` from `peers` both ways (dropped packets, as a real partition: no reset, no refusal); only
 * their `port` when given (one service of a host).
 */
export function partition(h: Host, peers: Host[], port?: number): void {
  const ips = peers.map(ipOf).join(", ");
  const out = port
    ? `ip daddr { ${ips} } tcp dport ${port} counter drop;`
    : `ip daddr { ${ips} } counter drop;`;
  const inp = port
    ? `ip saddr { ${ips} } tcp sport ${port} counter drop;`
    : `ip saddr { ${ips} } counter drop;`;
  const rules = `table inet rigpart {
  chain o { type filter hook output priority 0; ${out} }
  chain i { type filter hook input priority 0; ${inp} }
}
`;
  run("ip", ["netns", "exec", nsOf(h), "nft", "-f", "-"], { input: rules });
}

/** Packets `h` tried to send across its partition so far (the output rule's counter). */
export function droppedOut(h: Host): number {
  const out = inNs(h, "nft", ["list", "chain", "inet", "rigpart", "o"], { allowFail: true });
  return Number(/counter packets (\d+)/.exec(out)?.[1] ?? 0);
}

/** Heals the partitions of `h`. */
export function heal(h: Host): void {
  inNs(h, "nft", ["delete", "table", "inet", "rigpart"], { allowFail: true });
}

/** A process the rig started in a host's namespace, its output in a log file. */
export class Proc {
  child: ChildProcess | undefined;
  exited: Promise<number | null> = Promise.resolve(null);
  readonly name: string;
  readonly host: Host;
  readonly cmd: string;
  readonly args: string[];
  readonly logFile: string;
  readonly env: NodeJS.ProcessEnv;
  constructor(
    name: string,
    host: Host,
    cmd: string,
    args: string[],
    logFile: string,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.name = name;
    this.host = host;
    this.cmd = cmd;
    this.args = args;
    this.logFile = logFile;
    this.env = env;
  }

  start(): this {
    if (verbose) process.stderr.write(`$ [${this.host}] ${this.cmd} ${this.args.join(" ")}\n`);
    const out = createWriteStream(this.logFile, { flags: "a" });
    // `ip netns exec` execs the command: the child's pid is the process's own (kill -9 reaches it).
    const child = spawn("ip", ["netns", "exec", nsOf(this.host), this.cmd, ...this.args], {
      env: this.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    return this;
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and waits for the exit (at most `ms`, then SIGKILL). */
  async stop(signal: NodeJS.Signals = "SIGTERM", ms = 15_000): Promise<void> {
    if (!this.running) return;
    this.child?.kill(signal);
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(timer);
  }
}

/** CPU seconds (user + system) a process used so far, from /proc. */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `probe` resolves true (polled every 200 ms), or throws after `ms`. */
export async function until(
  what: string,
  probe: () => Promise<boolean> | boolean,
  ms = 30_000,
): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await Promise.resolve(probe()).catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** A server certificate for the rig's addresses, issued by the development CA with OpenSSL. */
export function rigServerCert(pkiDir: string): void {
  const cert = path.join(pkiDir, "rig-server.pem");
  if (existsSync(cert)) return;
  const key = path.join(pkiDir, "rig-server.key");
  const ext = path.join(pkiDir, "rig-server.ext");
  const csr = path.join(pkiDir, "rig-server.csr");
  const sans = ["DNS:localhost", "IP:127.0.0.1", ...Object.values(HOSTS).map((b) => `IP:10.99.0.${b}`)];
  writeFileSync(
    ext,
    `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n`,
  );
  run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
  run("openssl", ["req", "-new", "-key", key, "-subj", "/CN=eproxy-rig/O=eProxy rig", "-out", csr]);
  run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    path.join(pkiDir, "ca.pem"),
    "-CAkey",
    path.join(pkiDir, "ca-key.pem"),
    "-CAcreateserial",
    "-days",
    "30",
    "-extfile",
    ext,
    "-out",
    cert,
  ]);
}

export function ensureDir(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}
