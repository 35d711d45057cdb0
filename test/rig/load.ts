/**
 * The rig's callers: a steady relay load through the balancer (REST `/send/insi` over HTTP/1.1
 * keep-alive, each call with its own correlation id) and CIBA logins in flight (StartCiba on one
 * replica, the same StartCiba again on another as a caller's retry — it must reuse the request, not
 * push again — and WatchCiba on a third, moving on to another replica when one fails).
 */
import https from "node:https";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AuthService, CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { insiSearchRequest } from "../../src/sandbox/soap-samples.ts";
import type { ClientId } from "./deployment.ts";
import { ipOf, REPLICAS, type Replica, sleep } from "./infra.ts";

const SOAP12 =
  'application/soap+xml; charset=utf-8; action="urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"';
const BODY = insiSearchRequest("UNIQUE");
export const LB_URL = `https://${ipOf("lb")}:8443`;

/** A session the callers hold. */
export interface HeldSession {
  client: ClientId;
  token: string;
}

/** One relayed call's outcome. */
export interface RelayResult {
  at: number;
  /** `OK`, eProxy's code (x-eproxy-error), `HTTP_<status>`, or the network error's code. */
  code: string;
  correlationId: string;
  client: ClientId;
}

/** One relayed call through `baseUrl`. */
export function relayOnce(
  agent: https.Agent,
  keys: Record<ClientId, string>,
  s: HeldSession,
  correlationId: string,
  baseUrl = LB_URL,
): Promise<string> {
  return new Promise((resolve) => {
    const req = https.request(
      `${baseUrl}/send/insi/rechercherInsAvecTraitsIdentite`,
      {
        method: "POST",
        agent,
        timeout: 10_000,
        headers: {
          "x-eproxy-api-key": keys[s.client],
          authorization: `Bearer ${s.token}`,
          "content-type": SOAP12,
          "x-correlation-id": correlationId,
        },
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          const code = res.headers["x-eproxy-error"];
          resolve(res.statusCode === 200 ? "OK" : typeof code === "string" ? code : `HTTP_${res.statusCode}`);
        });
        res.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "ABORTED"));
      },
    );
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "ERROR"));
    req.end(BODY);
  });
}

/** A steady relay load at `rate` calls per second (at most 64 in flight), round-robin over `sessions`. */
export class RelayLoad {
  readonly results: RelayResult[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight = new Set<Promise<void>>();
  private n = 0;
  private readonly agent: https.Agent;
  private readonly keys: Record<ClientId, string>;
  private readonly sessions: () => HeldSession[];
  private readonly rate: number;
  private readonly tag: string;
  constructor(
    agent: https.Agent,
    keys: Record<ClientId, string>,
    sessions: () => HeldSession[],
    rate: number,
    tag: string,
  ) {
    this.agent = agent;
    this.keys = keys;
    this.sessions = sessions;
    this.rate = rate;
    this.tag = tag;
  }

  start(): void {
    const every = Math.max(5, Math.round(1000 / this.rate));
    this.timer = setInterval(() => {
      const all = this.sessions();
      if (all.length === 0 || this.inFlight.size >= 64) return;
      const s = all[this.n % all.length] as HeldSession;
      const correlationId = `rig-${this.tag}-${++this.n}`;
      const p = relayOnce(this.agent, this.keys, s, correlationId).then((code) => {
        this.results.push({ at: Date.now(), code, correlationId, client: s.client });
        this.inFlight.delete(p);
      });
      this.inFlight.add(p);
    }, every);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.inFlight);
  }
}

/** AuthService on one replica, directly (not through the balancer). */
export function authOn(r: Replica, ca: string, apiKey: string): Client<typeof AuthService> {
  const withKey: Interceptor = (next) => (req) => {
    req.header.set("x-eproxy-api-key", apiKey);
    return next(req);
  };
  return createClient(
    AuthService,
    createGrpcTransport({
      baseUrl: `https://${ipOf(r)}:8443`,
      nodeOptions: { ca },
      interceptors: [withKey],
      defaultTimeoutMs: 70_000,
    }),
  );
}

/** One CIBA login as the rig ran it. */
export interface LoginRecord {
  client: ClientId;
  nationalId: string;
  startedOn: Replica;
  /** StartCiba answered a new request (a push to PSC was made for it). */
  fresh: boolean;
  /** The retry on another replica reused the same request (no second push). */
  retryReused: boolean | undefined;
  /** Replica whose WatchCiba delivered the final state. */
  watchedOn?: Replica;
  status: string;
  token?: string;
  errors: string[];
}

const STATUS_NAMES = new Map<number, string>(Object.entries(CibaStatus).map(([k, v]) => [v as number, k]));

const codeOf = (err: unknown): string =>
  err instanceof ConnectError
    ? `${Code[err.code]}${err.metadata.get("x-eproxy-error") ? `/${err.metadata.get("x-eproxy-error")}` : ""}`
    : String((err as NodeJS.ErrnoException).code ?? err);

/**
 * CIBA logins in flight: one worker per (client, professional) in `pairs`, each starting a login,
 * retrying it on another replica, watching it on a third, then pausing `pauseMs`.
 */
export class Logins {
  readonly records: LoginRecord[] = [];
  private running = false;
  private workers: Promise<void>[] = [];
  private readonly auth: (r: Replica, client: ClientId) => Client<typeof AuthService>;
  private readonly alive: () => Replica[];
  private readonly pairs: Array<{ client: ClientId; nationalId: string }>;
  private readonly pauseMs: number;
  constructor(
    auth: (r: Replica, client: ClientId) => Client<typeof AuthService>,
    alive: () => Replica[],
    pairs: Array<{ client: ClientId; nationalId: string }>,
    pauseMs: number,
  ) {
    this.auth = auth;
    this.alive = alive;
    this.pairs = pairs;
    this.pauseMs = pauseMs;
  }

  start(): void {
    this.running = true;
    this.workers = this.pairs.map((p, i) =>
      (async () => {
        await sleep(i * 300);
        while (this.running) {
          await this.loginOnce(p.client, p.nationalId);
          await sleep(this.pauseMs);
        }
      })(),
    );
  }

  /** Stops starting logins and waits (at most `ms`) for those in flight to end. */
  async stop(ms = 75_000): Promise<void> {
    this.running = false;
    await Promise.race([Promise.all(this.workers), sleep(ms)]);
  }

  /** A replica at random (every replica starts, retries and watches logins), none of `except` if it can. */
  private pick(except: Replica[] = []): Replica {
    const alive = this.alive();
    const choices = alive.filter((r) => !except.includes(r));
    const from = choices.length ? choices : alive.length ? alive : [...REPLICAS];
    return from[Math.floor(Math.random() * from.length)] as Replica;
  }

  async loginOnce(client: ClientId, nationalId: string): Promise<LoginRecord> {
    const rec: LoginRecord = {
      client,
      nationalId,
      startedOn: this.pick(),
      fresh: false,
      retryReused: undefined,
      status: "NONE",
      errors: [],
    };
    this.records.push(rec);
    let authReqId = "";
    for (let attempt = 0; attempt < 5 && !authReqId; attempt++) {
      const on = attempt === 0 ? rec.startedOn : this.pick([rec.startedOn]);
      try {
        const r = await this.auth(on, client).startCiba({
          nationalId,
          newSession: true,
          bindingMessage: "42",
        });
        authReqId = r.authReqId;
        rec.startedOn = on;
        rec.fresh = !r.reused;
      } catch (err) {
        rec.errors.push(`start@${on}:${codeOf(err)}`);
        await sleep(500);
      }
    }
    if (!authReqId) {
      rec.status = "NOT_STARTED";
      return rec;
    }
    // A caller's retry on another replica: the pending request is reused (no second push).
    const again = this.pick([rec.startedOn]);
    try {
      const r = await this.auth(again, client).startCiba({
        nationalId,
        newSession: true,
        bindingMessage: "42",
      });
      rec.retryReused = r.reused && r.authReqId === authReqId;
    } catch (err) {
      rec.errors.push(`retry@${again}:${codeOf(err)}`);
    }
    const deadline = Date.now() + 75_000;
    let watcher = this.pick([rec.startedOn, again]);
    while (Date.now() < deadline) {
      try {
        for await (const m of this.auth(watcher, client).watchCiba({ authReqId })) {
          rec.status = STATUS_NAMES.get(m.status) ?? String(m.status);
          if (m.session?.sessionToken) rec.token = m.session.sessionToken;
        }
        rec.watchedOn = watcher;
        if (rec.status !== "PENDING" && rec.status !== "NONE") return rec;
      } catch (err) {
        rec.errors.push(`watch@${watcher}:${codeOf(err)}`);
        await sleep(300);
      }
      watcher = this.pick([watcher]);
    }
    return rec;
  }
}
