/**
 * The SOAP relay: check the caller's right to the teleservice, the body size and the session, get
 * the API token, read the SOAP facts from the first bytes, then stream the same bytes upstream over
 * mTLS and stream the answer back, byte for byte. Steps: resolve → verify → exchange → forward.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { MisuseGuard } from "../auth/misuse.ts";
import type { Sessions } from "../auth/sessions.ts";
import type { SessionRecord, WindowCount } from "../auth/store.ts";
import type { ClientConfig, Config, TeleserviceConfig } from "../config.ts";
import { EproxyError } from "../errors.ts";
import { type AccessFields, noteAccess } from "../log.ts";
import type { Traces } from "../trace/traces.ts";
import type { ApiTokens } from "./api-tokens.ts";
import { toDownstreamHeaders, toUpstreamHeaders } from "./headers.ts";
import type { HeaderMap, Upstream, UpstreamResponse } from "./ports.ts";
import { peek, type SoapInfo, sniffSoap } from "./soap-sniff.ts";
import { isNodeReadable, streamChunks } from "./stream-chunks.ts";

/** How many bytes are read before forwarding, to find the SOAP version and wsa:Action. */
export const SNIFF_BYTES = 64 * 1024;

/** A request to relay. */
export interface RelayRequest {
  caller: ClientConfig;
  sessionToken: string | undefined;
  service: string;
  /** Path (and query) appended to the teleservice base URL. */
  path: string;
  headers: HeaderMap;
  body: AsyncIterable<Uint8Array>;
  signal?: AbortSignal;
  /**
   * Largest answer the transport can carry (a Connect message is bounded): beyond it the relay
   * stops with PAYLOAD_TOO_LARGE carrying `tooLargeHint`. Unbounded when absent (a streamed answer).
   */
  maxAnswerBytes?: number;
  /** Says where a larger answer can be had (appended to the PAYLOAD_TOO_LARGE message). */
  tooLargeHint?: string;
}

/** A relayed answer, still streaming. */
export interface RelayResponse {
  status: number;
  headers: Record<string, string | string[]>;
  /**
   * The answer's bytes, unchanged. Reading it to the end, failing, or stopping early (the caller
   * hung up) records the call's one SEND trace, with its duration, bytes and outcome.
   */
  body: AsyncIterable<Buffer>;
  soap: SoapInfo;
  correlationId: string;
}

const SOAP_TYPES =
  /^(application\/soap\+xml|text\/xml|application\/xml|multipart\/related|application\/xop\+xml)\b/i;
const JSON_TYPES = /^application\/(?:[\w.+-]+\+)?json\b/i;
const SAFE_ID = /^[\w.:@-]{1,128}$/;

/** What a SEND trace says of a call the teleservice answered. */
interface SendFacts {
  soapAction?: string;
  upstreamStatus: number;
  bytesIn: number;
  bytesOut: number;
  correlationId: string;
}

/** One relayed call, as the steps after the session lookup share it. */
interface Call {
  req: RelayRequest;
  t: TeleserviceConfig;
  rec: SessionRecord;
  uses: WindowCount | undefined;
  started: number;
}

/** The relay service. */
export interface Relay {
  /** The teleservice a caller may use, or NOT_FOUND / PERMISSION_DENIED. */
  teleserviceFor(caller: ClientConfig, service: string): TeleserviceConfig;
  forward(req: RelayRequest): Promise<RelayResponse>;
}

/** A base URL's parts that a relayed path is appended to (the href before its path, the path without trailing slashes). */
interface ParsedBase {
  /** `scheme://host[:port]`, or undefined when the base has credentials, a query or a fragment. */
  prefix: string | undefined;
  path: string;
  url: URL;
}
const bases = new Map<string, ParsedBase>();

function parsedBase(base: string): ParsedBase {
  let b = bases.get(base);
  if (!b) {
    const url = new URL(base);
    const plain = url.username === "" && url.password === "" && url.search === "" && url.hash === "";
    b = {
      prefix: plain ? `${url.protocol}//${url.host}` : undefined,
      path: url.pathname.replace(/\/+$/, ""),
      url,
    };
    // Bases come from the configuration: a handful. Bounded anyway.
    if (bases.size >= 256) bases.clear();
    bases.set(base, b);
  }
  return b;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the controls are what is refused
const CONTROL = /[\x00-\x1f\x7f]|%[01][0-9a-f]|%7f/i;
const ENCODED_SEPARATOR = /%2f|%5c|%2e%2e/i;

/** A dot segment as the URL parser sees it: `.`, `..`, and their `%2e` spellings (`.%2e`, `%2E`). */
function isDotSegment(s: string): boolean {
  if (s.length > 6) return false;
  const d = s.replace(/%2e/gi, ".");
  return d === "." || d === "..";
}

/** Appends `path` (with its query) to the teleservice base URL, refusing tricks that would leave it. */
export function upstreamUrl(base: string, path: string): URL {
  const b = parsedBase(base);
  // NUL and other control characters (raw or percent-encoded) have no business in a teleservice path.
  if (CONTROL.test(path)) throw new EproxyError("INVALID_ARGUMENT", "invalid path");
  const qi = path.indexOf("?");
  const p = qi < 0 ? path : path.slice(0, qi);
  const segments = p.split("/").filter((s) => s !== "");
  for (const s of segments) {
    if (isDotSegment(s) || ENCODED_SEPARATOR.test(s) || s.includes("\\")) {
      throw new EproxyError("INVALID_ARGUMENT", "invalid path");
    }
  }
  const joined = segments.length === 0 ? b.path || "/" : `${b.path}/${segments.join("/")}`;
  // The whole URL parsed once. `#` (a fragment in a URL string) and a trailing space (trimmed from
  // a URL string) go through the setters, which encode them.
  if (b.prefix !== undefined && !path.includes("#")) {
    const href = qi < 0 ? `${b.prefix}${joined}` : `${b.prefix}${joined}?${path.slice(qi + 1)}`;
    if (!href.endsWith(" ")) return new URL(href);
  }
  const u = new URL(b.url.href);
  u.pathname = joined;
  if (qi >= 0) u.search = `?${path.slice(qi + 1)}`;
  return u;
}

/** Told each relayed chunk's size and its body's size so far (infra/reclaim.ts). */
export type Reclaim = (bytes: number, bodyBytes: number) => void;

function limited(
  body: AsyncIterable<Uint8Array>,
  max: number,
  count: { n: number },
  reclaim: Reclaim | undefined,
): AsyncIterable<Uint8Array> {
  // A hand-written iterator, not an async generator: measured in a minimal relay, one async
  // generator stage per call made ~14 % of every call's allocations survive young-generation
  // collections until the next full one (10–15 ms scavenges, 7 MB promoted each) and cost ~30 %
  // more CPU per call; a plain iterator object does neither.
  return {
    [Symbol.asyncIterator]() {
      const it = body[Symbol.asyncIterator]();
      let n = 0;
      return {
        async next() {
          const r = await it.next();
          if (r.done) return r;
          n += r.value.length;
          count.n = n;
          reclaim?.(r.value.length, n);
          if (n > max) {
            // As a for-await loop leaving on an error would: the source is released.
            await it.return?.();
            throw new EproxyError("PAYLOAD_TOO_LARGE", `body larger than ${max} bytes`);
          }
          return r;
        },
        async return() {
          await it.return?.();
          return { done: true as const, value: undefined };
        },
      };
    },
  };
}

/**
 * The request body, failing as soon as the caller hangs up: an HTTP/2 request reset by its caller
 * does not always end its body stream, and the relay would wait for the first bytes forever.
 *
 * A Node stream body is read through its `data` events (relay/stream-chunks.ts), not its async
 * iterator: that iterator's `read()` joins the chunks buffered while the relay waits
 * on the teleservice into one new buffer, which copied most of a large upload a second time (a
 * 100 MiB MTOM upload over HTTP/1.1: 1,393 reads of ~75 KiB, 1,282 of them copies of 16 KiB
 * chunks) and doubled the garbage that only full collections free. The chunks go on as received.
 */
export function untilAborted(
  body: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
): AsyncIterable<Uint8Array> {
  if (isNodeReadable(body)) return { [Symbol.asyncIterator]: () => streamChunks(body, signal, cancelled) };
  return {
    [Symbol.asyncIterator]() {
      const it = body[Symbol.asyncIterator]();
      // The read in progress, failed by the abort. Not `Promise.race([it.next(), aborted])` with one
      // long-lived `aborted` promise: each race leaves a reaction on it that holds the race's result,
      // so every chunk read stayed reachable until the body ended (a 100 MiB upload kept ~100 MB
      // of buffers alive, seen in a heap snapshot: 969 chunks held by promise reactions).
      let failPending: ((err: unknown) => void) | undefined;
      const onAbort = () => failPending?.(cancelled());
      signal.addEventListener("abort", onAbort, { once: true });
      return {
        next() {
          if (signal.aborted) return Promise.reject(cancelled());
          return new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
            failPending = reject;
            it.next().then(
              (r) => {
                failPending = undefined;
                if (r.done) signal.removeEventListener("abort", onAbort);
                resolve(r);
              },
              (err: unknown) => {
                failPending = undefined;
                reject(err);
              },
            );
          });
        },
        async return() {
          failPending = undefined;
          signal.removeEventListener("abort", onAbort);
          await it.return?.();
          return { done: true as const, value: undefined };
        },
      };
    },
  };
}

function cancelled(): EproxyError {
  return new EproxyError("UNAVAILABLE", "request cancelled by the caller");
}

/** Drops an upstream body we will not relay (undici reports the destroy as an error: ignore it). */
export function discard(body: UpstreamResponse["body"]): void {
  body.on("error", () => {});
  body.destroy();
}

/** Creates the relay. */
export function createRelay(deps: {
  config: Readonly<Config>;
  sessions: Sessions;
  apiTokens: ApiTokens;
  upstream: Upstream;
  thumbprintOf: (clientId: string) => string;
  /** Misuse thresholds (relayed calls per session). */
  misuse?: MisuseGuard;
  /** Where the SEND trace of each relayed call goes. */
  traces?: Traces;
  log: Logger;
  /**
   * Told every relayed body chunk, both ways: its size and the body's size so far (infra/reclaim.ts:
   * bounded memory for large bodies).
   */
  reclaim?: Reclaim | undefined;
}): Relay {
  const { config, sessions, apiTokens, upstream, log } = deps;
  const traces = deps.traces ?? { record() {} };
  const byName = new Map(config.teleservices.map((t) => [t.name, t]));

  function teleserviceFor(caller: ClientConfig, service: string): TeleserviceConfig {
    const t = byName.get(service);
    if (!t) throw new EproxyError("NOT_FOUND", `unknown teleservice ${service}`);
    if (!caller.allowedServices.includes(t.name)) {
      throw new EproxyError("PERMISSION_DENIED", `client ${caller.id} may not use teleservice ${service}`);
    }
    return t;
  }

  /** The call's one SEND trace (built here only), once the session is known. */
  function recordSend(
    call: Call,
    outcome: string,
    answered: SendFacts | undefined,
    callerCorrelationId: string | undefined,
  ): void {
    const { req, rec } = call;
    // One shape for every SEND (absent fields undefined): no conditional spreads per call.
    traces.record({
      type: "SEND",
      clientId: req.caller.id,
      nationalId: rec.professional.nationalId,
      sessionId: rec.id,
      sessionState: rec.psc.sessionState || undefined,
      service: call.t.name,
      method: "POST",
      path: `/${req.path.split("?")[0]?.replace(/^\/+/, "") ?? ""}`,
      soapAction: answered?.soapAction || undefined,
      upstreamStatus: answered?.upstreamStatus,
      durationMs: Math.round(performance.now() - call.started),
      bytesIn: answered?.bytesIn,
      bytesOut: answered?.bytesOut,
      correlationId: answered ? answered.correlationId : callerCorrelationId || undefined,
      outcome,
    });
  }

  /**
   * The caller hanging up before the answer is a client abort, traced as such (not as an upstream
   * failure): the SEND says ABORTED, the transport answers nobody.
   */
  async function aborted(call: Call, err: unknown): Promise<never> {
    const { req } = call;
    // The request body fails (stream reset) a moment before the transport reports the hang-up.
    if (!req.signal?.aborted) await new Promise((r) => setImmediate(r));
    if (req.signal?.aborted) {
      // The caller's own correlation id, when it gave a safe one, ties the trace to its request.
      const given = req.headers["x-correlation-id"];
      recordSend(
        call,
        "ABORTED",
        undefined,
        typeof given === "string" && SAFE_ID.test(given) ? given : undefined,
      );
    }
    throw err;
  }

  async function send(call: Call, url: URL, headers: Record<string, string>): Promise<RelayResponse> {
    const { req, t, rec } = call;
    await deps.misuse?.relayed(
      { id: rec.id, nationalId: rec.professional.nationalId },
      req.caller.id,
      call.uses,
    );
    const apiToken = await apiTokens.get(rec, t, deps.thumbprintOf(req.caller.id), req.signal);

    const ct = req.headers["content-type"];
    const contentType = Array.isArray(ct) ? ct[0] : ct;
    const sa = req.headers.soapaction;
    const counted = { n: 0 };
    const { head, body, complete } = await peek(
      limited(
        req.signal ? untilAborted(req.body, req.signal) : req.body,
        t.maxBodyBytes,
        counted,
        deps.reclaim,
      ),
      SNIFF_BYTES,
    );
    // Nothing to relay (a chunked body that turned out empty, an empty ForwardSoap body).
    if (complete && head.length === 0) {
      throw new EproxyError(
        "INVALID_ARGUMENT",
        "empty body: a SOAP envelope (or an MTOM package) is expected",
      );
    }
    const soap = sniffSoap(head, contentType, Array.isArray(sa) ? sa[0] : sa);

    const given = req.headers["x-correlation-id"];
    const correlationId = typeof given === "string" && SAFE_ID.test(given) ? given : randomUUID();
    headers["x-correlation-id"] = correlationId;
    if (apiToken) headers.authorization = `Bearer ${apiToken}`;

    const res = await upstream.post(
      req.signal
        ? {
            clientId: req.caller.id,
            teleservice: t,
            url,
            headers,
            // A body that fit in the sniffed head goes as one buffer: headers and body in one TLS write.
            body: complete ? head : body,
            signal: req.signal,
          }
        : { clientId: req.caller.id, teleservice: t, url, headers, body: complete ? head : body },
    );
    const rct = res.headers["content-type"];
    const resType = Array.isArray(rct) ? rct[0] : rct;
    // Answers that are not SOAP (an HTML error page from a load balancer) are not passed off as SOAP.
    const accepted = resType
      ? SOAP_TYPES.test(resType) || (t.jsonAnswers && JSON_TYPES.test(resType))
      : res.status < 300;
    if (!accepted) {
      discard(res.body);
      log.warn(
        { teleservice: t.name, status: res.status, contentType: resType },
        "non-SOAP answer from teleservice",
      );
      throw new EproxyError(
        "UPSTREAM_BAD_RESPONSE",
        `teleservice ${t.name} answered HTTP ${res.status} without SOAP`,
      );
    }
    // No log line here: the access line (noteAccess in Answer) carries teleservice, action and statuses.
    return {
      status: res.status,
      headers: toDownstreamHeaders(res.headers, t.exposeCorrelationId),
      body: new Answer(call, res, soap.action, counted, correlationId),
      soap,
      correlationId,
    };
  }

  /**
   * The answer's bytes: counts them and records the call's SEND once they end, fail or are left
   * early. A plain iterator class, not an async generator (see `limited`), nor closures per call.
   */
  class Answer implements AsyncIterator<Buffer>, AsyncIterable<Buffer> {
    private readonly call: Call;
    private readonly source: AsyncIterator<Buffer>;
    private readonly upstreamBody: UpstreamResponse["body"];
    private readonly upstreamStatus: number;
    private readonly soapAction: string | undefined;
    private readonly counted: { n: number };
    private readonly correlationId: string;
    private readonly max: number;
    private bytesOut = 0;
    private outcome = "ABORTED";
    private finished = false;

    constructor(
      call: Call,
      res: UpstreamResponse,
      soapAction: string | undefined,
      counted: { n: number },
      correlationId: string,
    ) {
      this.call = call;
      this.upstreamBody = res.body;
      this.upstreamStatus = res.status;
      this.soapAction = soapAction;
      this.counted = counted;
      this.correlationId = correlationId;
      this.source = (res.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      this.max = call.req.maxAnswerBytes ?? Number.POSITIVE_INFINITY;
    }

    [Symbol.asyncIterator](): AsyncIterator<Buffer> {
      return this;
    }

    private finish(): void {
      if (this.finished) return;
      this.finished = true;
      const facts: SendFacts = this.soapAction
        ? {
            soapAction: this.soapAction,
            upstreamStatus: this.upstreamStatus,
            bytesIn: this.counted.n,
            bytesOut: this.bytesOut,
            correlationId: this.correlationId,
          }
        : {
            upstreamStatus: this.upstreamStatus,
            bytesIn: this.counted.n,
            bytesOut: this.bytesOut,
            correlationId: this.correlationId,
          };
      const access: AccessFields = { teleservice: this.call.t.name };
      if (facts.soapAction) access.soapAction = facts.soapAction;
      access.upstreamStatus = facts.upstreamStatus;
      access.bytesIn = facts.bytesIn;
      access.bytesOut = facts.bytesOut;
      access.correlationId = facts.correlationId;
      noteAccess(access);
      // Left early without an error: the caller stopped reading (hung up), which is ABORTED too.
      recordSend(this.call, this.outcome, facts, undefined);
    }

    async next(): Promise<IteratorResult<Buffer>> {
      if (this.finished) return { done: true, value: undefined };
      let r: IteratorResult<Buffer>;
      try {
        r = await this.source.next();
      } catch (err) {
        // The upstream failing mid-answer (a reset, a stall: the adapter's UPSTREAM_* error) is
        // the teleservice's failure, traced with its code; the caller hanging up stays ABORTED.
        if (!this.call.req.signal?.aborted) this.outcome = err instanceof EproxyError ? err.code : "INTERNAL";
        this.finish();
        throw err;
      }
      if (r.done) {
        this.outcome = "OK";
        this.finish();
        return r;
      }
      if (this.bytesOut + r.value.length > this.max) {
        this.outcome = "PAYLOAD_TOO_LARGE";
        discard(this.upstreamBody);
        this.finish();
        await this.source.return?.().catch(() => {});
        const hint = this.call.req.tooLargeHint;
        throw new EproxyError(
          "PAYLOAD_TOO_LARGE",
          `answer larger than ${this.max} bytes${hint ? `: ${hint}` : ""}`,
        );
      }
      this.bytesOut += r.value.length;
      deps.reclaim?.(r.value.length, this.bytesOut);
      return r;
    }

    async return(): Promise<IteratorResult<Buffer>> {
      if (!this.finished) {
        await this.source.return?.();
        this.finish();
      }
      return { done: true, value: undefined };
    }
  }

  return {
    teleserviceFor,
    async forward(req) {
      const started = performance.now();
      const t = teleserviceFor(req.caller, req.service);
      const url = upstreamUrl(t.upstreamUrl, req.path);
      const headers = toUpstreamHeaders(req.headers);
      const declared = req.headers["content-length"];
      // 413 before any upstream byte when the caller announces too much.
      if (declared !== undefined && Number(declared) > t.maxBodyBytes) {
        throw new EproxyError("PAYLOAD_TOO_LARGE", `body larger than ${t.maxBodyBytes} bytes`);
      }
      // The session lookup also counts the call for the misuse guard (one store operation).
      const { rec, uses } = await sessions.freshCounted(
        req.sessionToken,
        req.caller.id,
        deps.misuse?.relayWindowMs,
      );
      const call: Call = { req, t, rec, uses, started };
      try {
        return await send(call, url, headers);
      } catch (err) {
        return aborted(call, err);
      }
    },
  };
}
