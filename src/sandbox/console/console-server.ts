/**
 * The sandbox console: a small HTTP server on loopback (its own port, never eProxy's listener) with
 * the virtual e-CPS app (pending pushes, approve / deny / let expire, auto-approval), the PSC-like
 * login page of the code flow, the live view (sessions, the trace timeline over server-sent events,
 * relayed SOAP exchanges with their bodies) and the simulators' fault switches. Plain HTML, CSS and
 * JavaScript from ./assets, served by this process: no framework, no CDN. Sandbox only.
 */
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { TraceEvent } from "../../trace/traces.ts";
import { PROFESSIONALS } from "../professionals.ts";
import type { PscSimulator } from "../psc-simulator.ts";
import type { ObservedCall, TeleserviceSimulator } from "../teleservices.ts";
import { renderBody, type SessionView } from "./observe.ts";

/** Options of the console. */
export interface ConsoleOptions {
  /** Port on 127.0.0.1 (0 picks one). */
  port: number;
  psc: PscSimulator;
  teleservices: TeleserviceSimulator;
  /** The live sessions (from the sandbox's tracked session store). */
  sessions: () => Promise<SessionView[]>;
  /** Subscribes to stored traces; returns the unsubscribe function. */
  onTraces: (listener: (events: readonly TraceEvent[]) => void) => () => void;
  log: Logger;
}

/** A running console. */
export interface SandboxConsole {
  /** `http://localhost:port/`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** A relayed call as the console shows it. */
interface CallView {
  id: number;
  at: number;
  durationMs: number;
  path: string;
  kind: "exchange" | "soap";
  correlationId?: string;
  status?: number;
  faults: string[];
  request: { contentType: string; text: string; bytes: number };
  response: { contentType: string; text: string; bytes: number };
}

/** The fault switches, each mapped onto the simulators' control fields. */
const FAULTS = [
  "psc503",
  "pscSlowDown",
  "pscTlsRefusal",
  "as503",
  "teleSlow",
  "teleReset",
  "teleHtml502",
] as const;
type FaultName = (typeof FAULTS)[number];

const ASSETS: Record<string, string> = {
  "/": "index.html",
  "/assets/console.css": "console.css",
  "/assets/console.js": "console.js",
  "/assets/login.js": "login.js",
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
};
/** Profession codes (RPPS) of the sandbox's professionals. */
const PROFESSIONS: Record<string, string> = { "10": "Médecin", "21": "Pharmacien", "60": "Infirmier" };
const KEEP_TRACES = 300;
const KEEP_CALLS = 60;
/** Many: the switch stays on until it is turned off. */
const FOREVER = 1_000_000_000;

function loadAsset(name: string): Buffer {
  return readFileSync(new URL(`./assets/${name}`, import.meta.url));
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, {
    "content-type": type,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy":
      "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self' https://localhost:*",
  });
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json", JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > 64 * 1024) throw new Error("body too large");
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString() || "{}";
  const v = JSON.parse(text) as unknown;
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("a JSON object is expected");
  return v as Record<string, unknown>;
}

/** Starts the console. */
export async function startConsole(opts: ConsoleOptions): Promise<SandboxConsole> {
  const { psc, teleservices: tele, log } = opts;
  const assets = new Map(Object.entries(ASSETS).map(([p, f]) => [p, { file: f, body: loadAsset(f) }]));
  const loginPage = loadAsset("login.html");
  const traces: TraceEvent[] = [];
  const calls: CallView[] = [];
  const ignored = new Set<string>();
  const streams = new Set<ServerResponse>();
  let callSeq = 0;

  function broadcast(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of streams) s.write(frame);
  }

  const offTraces = opts.onTraces((events) => {
    for (const e of events) {
      traces.push(e);
      broadcast("trace", e);
    }
    if (traces.length > KEEP_TRACES) traces.splice(0, traces.length - KEEP_TRACES);
  });

  function viewOf(c: ObservedCall): CallView {
    const reqType = String(c.headers["content-type"] ?? "");
    const cid = c.headers["x-correlation-id"];
    const on = Object.entries(c.faults)
      .filter(([, v]) => v === true || (typeof v === "number" && v > 0))
      .map(([k]) => k);
    return {
      id: ++callSeq,
      at: c.at,
      durationMs: c.durationMs,
      path: c.path,
      kind: c.path === "/as/token" ? "exchange" : "soap",
      ...(typeof cid === "string" ? { correlationId: cid } : {}),
      ...(c.status !== undefined ? { status: c.status } : {}),
      faults: on,
      request: { contentType: reqType, text: renderBody(c.request, reqType), bytes: c.request.length },
      response: {
        contentType: c.contentType ?? "",
        text: renderBody(c.response, c.contentType),
        bytes: c.response.length,
      },
    };
  }
  const previousOnCall = tele.onCall;
  tele.onCall = (c) => {
    previousOnCall?.(c);
    const v = viewOf(c);
    calls.push(v);
    if (calls.length > KEEP_CALLS) calls.shift();
    broadcast("call", v);
  };

  const onPush = () => broadcast("pushes", pushes());
  const onInteraction = (i: { uid: string; clientId: string }) => broadcast("login", i);
  psc.events.on("push", onPush);
  psc.events.on("settled", onPush);
  psc.events.on("interaction", onInteraction);

  function pushes() {
    const list = psc.pending();
    for (const id of ignored) if (!list.some((p) => p.authReqId === id)) ignored.delete(id);
    return list.map((p) => ({ ...p, ignored: ignored.has(p.authReqId) }));
  }

  function faults(): Record<FaultName, boolean> & { teleSlowMs: number } {
    return {
      psc503: psc.faults.unavailablePolls > 0 || psc.faults.refreshUnavailable,
      pscSlowDown: psc.faults.slowDownPolls > 0,
      pscTlsRefusal: psc.faults.tlsRefusal,
      as503: tele.faults.asUnavailable === true,
      teleSlow: tele.faults.slowHeadersMs > 0,
      teleReset: tele.faults.resetMidBody,
      teleHtml502: tele.faults.html502,
      teleSlowMs: tele.faults.slowHeadersMs,
    };
  }

  function setFault(name: FaultName, on: boolean, value?: number): void {
    switch (name) {
      case "psc503":
        psc.faults.unavailablePolls = on ? FOREVER : 0;
        psc.faults.refreshUnavailable = on;
        break;
      case "pscSlowDown":
        psc.faults.slowDownPolls = on ? FOREVER : 0;
        break;
      case "pscTlsRefusal":
        psc.faults.tlsRefusal = on;
        break;
      case "as503":
        tele.faults.asUnavailable = on;
        break;
      case "teleSlow":
        tele.faults.slowHeadersMs = on ? Math.max(1, Math.min(value ?? 2_000, 120_000)) : 0;
        break;
      case "teleReset":
        tele.faults.resetMidBody = on;
        break;
      case "teleHtml502":
        tele.faults.html502 = on;
        break;
    }
  }

  function settings() {
    return { autoApproveMs: psc.settings.autoApproveMs, loginPage: psc.settings.loginPageUrl !== null };
  }

  const professionals = Object.entries(PROFESSIONALS).map(([nationalId, c]) => ({
    nationalId,
    name: `${String(c.given_name ?? "")} ${String(c.family_name ?? "")}`.trim(),
    profession: PROFESSIONS[String((c.SubjectRole as string[] | undefined)?.[0]?.split("^")[0])] ?? "",
  }));

  async function api(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? "GET";
    if (method === "GET" && path === "/api/state") {
      return json(res, 200, {
        professionals,
        pushes: pushes(),
        settings: settings(),
        faults: faults(),
        sessions: await opts.sessions(),
        traces,
        calls,
      });
    }
    if (method === "GET" && path === "/api/pushes") return json(res, 200, pushes());
    if (method === "GET" && path === "/api/sessions") return json(res, 200, await opts.sessions());
    if (method === "GET" && path === "/api/events") {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      });
      res.write("retry: 1000\n\n");
      streams.add(res);
      const beat = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
      beat.unref();
      res.once("close", () => {
        clearInterval(beat);
        streams.delete(res);
      });
      return;
    }
    if (method !== "POST") return json(res, 405, { error: "method not allowed" });
    // Cross-site pages cannot send this header without a preflight, which is never granted.
    if (req.headers["x-sandbox-console"] !== "1")
      return json(res, 403, { error: "x-sandbox-console: 1 expected" });
    const body = await readJson(req);
    const push = /^\/api\/pushes\/([^/]+)\/(approve|deny|ignore)$/.exec(path);
    if (push) {
      const id = decodeURIComponent(push[1] as string);
      if (push[2] === "ignore") {
        if (!psc.pending().some((p) => p.authReqId === id)) return json(res, 404, { error: "no such push" });
        ignored.add(id);
        broadcast("pushes", pushes());
        return json(res, 200, { ok: true });
      }
      try {
        await (push[2] === "approve" ? psc.approve(id) : psc.deny(id));
      } catch {
        return json(res, 404, { error: "no such push (answered or expired)" });
      }
      return json(res, 200, { ok: true });
    }
    if (path === "/api/settings") {
      if ("autoApproveMs" in body) {
        const v = body.autoApproveMs;
        if (v !== null && !(typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 600_000))
          return json(res, 400, { error: "autoApproveMs: null or 0 to 600000" });
        psc.settings.autoApproveMs = v;
      }
      if ("loginPage" in body) psc.settings.loginPageUrl = body.loginPage === true ? `${url}login/` : null;
      broadcast("settings", settings());
      return json(res, 200, settings());
    }
    if (path === "/api/faults") {
      const name = body.name as FaultName;
      if (!FAULTS.includes(name) || typeof body.on !== "boolean")
        return json(res, 400, { error: `name: one of ${FAULTS.join(", ")}; on: a boolean` });
      setFault(name, body.on, typeof body.value === "number" ? body.value : undefined);
      log.info({ fault: name, on: body.on }, "sandbox console: fault switch");
      broadcast("faults", faults());
      return json(res, 200, faults());
    }
    const login = /^\/api\/login\/([^/]+)$/.exec(path);
    if (login) {
      const nationalId = body.nationalId;
      if (nationalId !== null && (typeof nationalId !== "string" || !PROFESSIONALS[nationalId]))
        return json(res, 400, { error: "nationalId: a sandbox professional, or null to refuse" });
      try {
        const returnTo = await psc.finishLogin(decodeURIComponent(login[1] as string), nationalId);
        return json(res, 200, { returnTo });
      } catch (err) {
        return json(res, 404, { error: (err as Error).message });
      }
    }
    json(res, 404, { error: "not found" });
  }

  let url = "";
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    // Loopback only, and only under its own names: a rebound DNS name never reaches the controls.
    const host = req.headers.host ?? "";
    if (!/^(localhost|127\.0\.0\.1|\[::1\]):\d+$/.test(host))
      return send(res, 421, "text/plain", "wrong host\n");
    (async () => {
      if (path.startsWith("/api/")) return api(req, res, path);
      if (req.method !== "GET" && req.method !== "HEAD")
        return json(res, 405, { error: "method not allowed" });
      const a = assets.get(path);
      if (a) return send(res, 200, TYPES[a.file.split(".").pop() as string] as string, a.body);
      if (/^\/login\/[\w-]+$/.test(path)) return send(res, 200, TYPES.html as string, loginPage);
      if (path === "/favicon.ico") return send(res, 204, "image/x-icon", "");
      send(res, 404, "text/plain; charset=utf-8", "not found\n");
    })().catch((err: Error) => {
      if (!res.headersSent) json(res, 400, { error: err.message });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  url = `http://localhost:${port}/`;
  psc.settings.loginPageUrl = `${url}login/`;
  return {
    url,
    port,
    async close() {
      offTraces();
      tele.onCall = previousOnCall;
      psc.events.off("push", onPush);
      psc.events.off("settled", onPush);
      psc.events.off("interaction", onInteraction);
      psc.settings.loginPageUrl = null;
      for (const s of streams) s.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
