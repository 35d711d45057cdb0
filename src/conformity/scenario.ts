/**
 * The agency's conformity scenario, driven as the user software would drive it through eProxy's
 * REST facade: CIBA login of a professional, the `signsessiondata` call relayed by `/send/...` with
 * the session's `proxy_session_id` and PSC `session_state`, the mock's signature checked, logout,
 * then `GET /traces` over the window must show the login, the SEND and the logout. Transport-free:
 * the HTTP client and the signature check are given.
 */
import { randomInt } from "node:crypto";
import { checkTraces, type TraceJson, type TraceVerdict } from "./check-traces.ts";

/** One HTTP exchange with eProxy (JSON in, text out). */
export interface ConformityHttp {
  request(
    method: string,
    path: string,
    init?: { headers?: Record<string, string>; json?: unknown },
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }>;
}

/** Checks the mock's `signature` over the session data; resolves with a detail, rejects when it fails. */
export type SignatureCheck = (signature: string, data: Record<string, string>) => Promise<string>;

/** What the scenario needs. */
export interface ScenarioOptions {
  clientId: string;
  nationalId: string;
  /** Teleservice name of the mock in eProxy's configuration (`signsessiondata`). */
  service: string;
  /** Path after the teleservice name (`apipsc/signsessiondata`). */
  path: string;
  channel: "MOBILE" | "CARD";
  bindingMessage?: string;
  /** Verifies the signature; undefined: only its presence is checked (a warning). */
  verifySignature?: SignatureCheck;
  /** How long the traces may take to be readable after the logout. */
  tracesWaitMs: number;
  /** Clock and sleep (tests). */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

/** One step of the report. */
export interface StepResult {
  step: string;
  verdict: "ok" | "warn" | "fail" | "skip";
  detail: string;
}

/** The report of a run. */
export interface ConformityReport {
  ok: boolean;
  /** The window the traces were read over (ISO 8601). */
  window: { start: string; end: string };
  /** The session's public identifier, when the login succeeded. */
  proxySessionId?: string;
  steps: StepResult[];
  traces: TraceVerdict[];
}

/** Answers of eProxy's REST facade that the scenario reads. */
interface SessionJson {
  sessionToken?: string;
  proxySessionId?: string;
  sessionState?: string;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The problem's title/detail or the first characters of an answer, for a report line. */
function why(r: { status: number; text: string }): string {
  const p = parse(r.text) as { detail?: string; title?: string; error?: string } | undefined;
  const said = p?.detail ?? p?.title ?? p?.error ?? r.text.slice(0, 200).replace(/\s+/g, " ");
  return `HTTP ${r.status}${said ? `: ${said}` : ""}`;
}

/** Runs the scenario; never throws for a failed step (the report says it). */
export async function runScenario(http: ConformityHttp, opts: ScenarioOptions): Promise<ConformityReport> {
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const say = opts.progress ?? (() => {});
  const steps: StepResult[] = [];
  const step = (s: StepResult) => {
    steps.push(s);
    say(`${s.step}: ${s.verdict} ${s.detail}`);
  };
  // Traces are stamped by the proxy's clock: a margin on both sides absorbs a small skew.
  const start = now() - 60_000;
  let traces: TraceVerdict[] = [];
  let session: SessionJson | undefined;
  let sessionState = "";

  // 1. CIBA login (blocking REST call: answers once the professional approved, denied or let it expire).
  const bindingMessage = opts.bindingMessage ?? String(randomInt(0, 100)).padStart(2, "0");
  say(`login: CIBA push sent (${opts.channel}), binding message ${bindingMessage}: waiting for approval`);
  const login = await http.request("POST", "/oauth2/ciba", {
    json: {
      clientId: opts.clientId,
      nationalId: opts.nationalId,
      channel: opts.channel,
      bindingMessage,
      // A fresh session: a reused one has no token in the answer (eProxy keeps only its hash).
      newSession: true,
    },
  });
  const answer = parse(login.text) as { status?: string; session?: SessionJson } | undefined;
  if (login.status !== 200 || answer?.status !== "APPROVED" || !answer.session?.sessionToken) {
    step({ step: "login", verdict: "fail", detail: `CIBA login not approved: ${why(login)}` });
  } else {
    session = answer.session;
    step({
      step: "login",
      verdict: "ok",
      detail: `CIBA login approved, proxy_session_id ${session.proxySessionId}`,
    });
    sessionState = session.sessionState ?? "";
    const missing = [
      ...(session.proxySessionId ? [] : ["proxySessionId"]),
      ...(sessionState ? [] : ["sessionState"]),
    ];
    step(
      missing.length === 0
        ? {
            step: "session data",
            verdict: "ok",
            detail: "proxy_session_id and session_state given to the user software",
          }
        : {
            step: "session data",
            verdict: "fail",
            detail: `the session answer lacks ${missing.join(" and ")}`,
          },
    );
  }

  // 2. The mock call relayed through /send, 3. its signature.
  const token = session?.sessionToken;
  if (token && session?.proxySessionId) {
    const data = {
      nationalId: opts.nationalId,
      clientID: opts.clientId,
      proxy_session_id: session.proxySessionId,
      session_state: sessionState,
    };
    const sent = await http.request("POST", `/send/${opts.service}/${opts.path.replace(/^\/+/, "")}`, {
      headers: { authorization: `Bearer ${token}` },
      json: data,
    });
    const mock = parse(sent.text) as Record<string, unknown> | undefined;
    const echoed = mock && Object.entries(data).every(([k, v]) => mock[k] === v);
    if (sent.status !== 200 || !mock) {
      step({ step: "relay", verdict: "fail", detail: `${opts.service} through /send: ${why(sent)}` });
      step({ step: "signature", verdict: "skip", detail: "no answer from the mock" });
    } else {
      step(
        echoed
          ? {
              step: "relay",
              verdict: "ok",
              detail: `${opts.service} answered the session data through /send`,
            }
          : {
              step: "relay",
              verdict: "fail",
              detail: `${opts.service} answered other session data than sent`,
            },
      );
      const signature = mock.signature;
      if (typeof signature !== "string" || signature === "") {
        step({ step: "signature", verdict: "fail", detail: "the mock's answer has no signature" });
      } else if (!opts.verifySignature) {
        step({
          step: "signature",
          verdict: "warn",
          detail: "present, not verified (no --jwks-url or --jwks-file)",
        });
      } else {
        try {
          step({ step: "signature", verdict: "ok", detail: await opts.verifySignature(signature, data) });
        } catch (err) {
          step({
            step: "signature",
            verdict: "fail",
            detail: `does not verify: ${err instanceof Error ? err.message : String(err)}`,
          });
        }
      }
    }
  } else {
    step({ step: "relay", verdict: "skip", detail: "no session" });
    step({ step: "signature", verdict: "skip", detail: "no session" });
  }

  // 4. Logout (always, once logged in: a failed step must not leave the session behind).
  if (token) {
    const out = await http.request("DELETE", "/oauth2/session", {
      headers: { authorization: `Bearer ${token}` },
    });
    step(
      out.status === 200
        ? { step: "logout", verdict: "ok", detail: "session ended" }
        : { step: "logout", verdict: "fail", detail: why(out) },
    );
  } else {
    step({ step: "logout", verdict: "skip", detail: "no session" });
  }

  // 5. The traces of the window (written off the request path: read again until complete or late).
  let end = now() + 60_000;
  if (session?.proxySessionId) {
    const expected = {
      clientId: opts.clientId,
      proxySessionId: session.proxySessionId,
      sessionState,
      service: opts.service,
      path: `/${opts.path.replace(/^\/+/, "")}`,
    };
    const deadline = now() + opts.tracesWaitMs;
    let readError: string | undefined;
    for (;;) {
      end = now() + 60_000;
      const read = await readTraces(http, start, end);
      readError = read.error;
      traces = checkTraces(read.traces, expected);
      if ((!readError && traces.every((t) => t.ok)) || now() >= deadline) break;
      await sleep(500);
    }
    if (readError) {
      step({ step: "traces", verdict: "fail", detail: `GET /traces: ${readError}` });
    } else {
      const missing = traces.filter((t) => !t.ok);
      step(
        missing.length === 0
          ? {
              step: "traces",
              verdict: "ok",
              detail: "login, SEND and logout traced with session_state, client id, certificate DN and path",
            }
          : { step: "traces", verdict: "fail", detail: missing.map((t) => t.detail).join("; ") },
      );
    }
  } else {
    step({ step: "traces", verdict: "skip", detail: "no session to look for" });
  }

  return {
    ok: steps.every((s) => s.verdict !== "fail"),
    window: { start: new Date(start).toISOString(), end: new Date(end).toISOString() },
    ...(session?.proxySessionId ? { proxySessionId: session.proxySessionId } : {}),
    steps,
    traces,
  };
}

/** Every trace of [start, end), page by page (`x-next-page-token`). */
async function readTraces(
  http: ConformityHttp,
  start: number,
  end: number,
): Promise<{ traces: TraceJson[]; error?: string }> {
  const all: TraceJson[] = [];
  let pageToken: string | undefined;
  for (let page = 0; page < 100; page++) {
    const q = new URLSearchParams({
      start: new Date(start).toISOString(),
      end: new Date(end).toISOString(),
      pageSize: "1000",
      ...(pageToken ? { pageToken } : {}),
    });
    const r = await http.request("GET", `/traces?${q}`);
    const list = parse(r.text);
    if (r.status !== 200 || !Array.isArray(list)) return { traces: all, error: why(r) };
    all.push(...(list as TraceJson[]));
    const next = r.headers["x-next-page-token"];
    pageToken = typeof next === "string" && next !== "" ? next : undefined;
    if (!pageToken) break;
  }
  return { traces: all };
}
