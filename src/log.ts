/**
 * Structured JSON logging (pino): one access line per request, built from known fields, and a
 * request id on every other line emitted while a request is being served. Secrets are kept out by
 * construction (log objects carry ids, codes and counts, never headers or tokens) and, for the few
 * places that log a foreign object, redacted by exact path — never by scanning every object for
 * generic words, which costs a deep walk per line and hid every field named `code`.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { type Logger, pino } from "pino";

/** What the layers serving a request add to its access line (all optional, set as they become known). */
export interface AccessFields {
  /** Authenticated client id. */
  clientId?: string;
  /** REST route pattern (`/send/:service/*`) or RPC procedure (`/eproxy.v1.AuthService/StartCiba`). */
  route?: string;
  /** Connect/gRPC code of an RPC (`ok`, `unauthenticated`, ...) or eProxy's code of a REST answer (`OK`, `SESSION_INVALID`). */
  code?: string;
  /** Relay: teleservice, wsa:Action, upstream HTTP status and correlation id. */
  teleservice?: string;
  soapAction?: string;
  upstreamStatus?: number;
  correlationId?: string;
  /** Body bytes received and sent, when counted (the relay counts them exactly). */
  bytesIn?: number;
  bytesOut?: number;
}

/** Per-request context carried through async calls. */
export interface RequestContext {
  /** Request id (from a safe `x-request-id` header or generated). */
  requestId: string;
  /** Caller IP (X-Forwarded-For only from trusted proxies), for traces. */
  callerIp?: string;
  /** Fields of the access line, filled while the request is served. */
  access: AccessFields;
}

/** The async context of the request being served, if any. */
export const requestContext = new AsyncLocalStorage<RequestContext>();

/** Adds fields to the access line of the request being served (no-op outside a request). */
export function noteAccess(fields: AccessFields): void {
  const ctx = requestContext.getStore();
  if (ctx) Object.assign(ctx.access, fields);
}

/**
 * Exact paths pino redacts: the foreign objects some lines carry (`err` with an HTTP response or
 * request attached by a client library, a `headers` map). No wildcard: each path is one property
 * read per line.
 */
export const REDACT_PATHS = [
  "headers.authorization",
  "headers.cookie",
  'headers["set-cookie"]',
  'headers["x-eproxy-api-key"]',
  'headers["x-eproxy-session"]',
  "err.headers",
  "err.request",
  "err.response",
  "err.body",
  "err.cause.headers",
  "err.cause.request",
  "err.cause.response",
  "err.cause.body",
];

/** pino's destination with sonic-boom's flushes. */
export type LogDestination = pino.DestinationStream & {
  flushSync(): void;
  flush(cb?: (err?: Error) => void): void;
};

/**
 * Standard output as pino's destination, with lines gathered up to `bufferBytes` (and at most
 * `flushMs` old) before one write. pino's default destination hands every line to a libuv pool
 * thread (one `write` per line, a futex wake and an event-loop wake-up per line: measured, ~5
 * futex calls per relayed call); gathered lines cost one write per ~20 requests. The buffer is
 * written at exit (pino's exit hook, also after `process.exit`); a kill of the process (SIGKILL,
 * abort) can lose at most the last `flushMs`. `bufferBytes: 0` writes each line at once. A write
 * still in flight on libuv's pool at a sudden `process.exit` is finished by the pool's shutdown,
 * after the exit hook has written the rest: every line is written, that chunk last. A planned exit
 * waits for `flushLogs` first, and keeps the order.
 */
export function createLogDestination(
  opts: { fd?: number; bufferBytes?: number; flushMs?: number } = {},
): LogDestination {
  const bufferBytes = opts.bufferBytes ?? 4096;
  const dest = pino.destination({
    dest: opts.fd ?? 1,
    minLength: bufferBytes,
    sync: false,
  }) as unknown as LogDestination;
  return bufferBytes > 0 ? gatherLines(dest, bufferBytes, opts.flushMs ?? 250) : dest;
}

/**
 * Gathers lines in an array, handed to the destination joined once `bufferBytes` characters are
 * held, at each flush and at exit. sonic-boom appends each line to the text it holds and measures
 * that text's UTF-8 length again (a copy and a scan of up to `bufferBytes` per line); here a line
 * costs an array push, and a gathered chunk is measured once. Before pino's own exit hook (which
 * writes what sonic-boom holds synchronously), the lines held here are handed to it.
 */
function gatherLines(dest: LogDestination, bufferBytes: number, flushMs: number): LogDestination {
  let lines: string[] = [];
  let chars = 0;
  const hand = (): void => {
    if (lines.length === 0) return;
    const text = lines.length === 1 ? (lines[0] as string) : lines.join("");
    lines = [];
    chars = 0;
    dest.write(text);
  };
  // What sonic-boom's periodicFlush did: write what is held, at most flushMs old.
  const timer = setInterval(() => {
    try {
      hand();
      dest.flush();
    } catch {
      // The destination was ended (exit): nothing left to write to.
    }
  }, flushMs);
  timer.unref();
  process.prependListener("beforeExit", hand);
  process.prependListener("exit", hand);
  const gathered: LogDestination = {
    write(line: string): boolean {
      lines.push(line);
      chars += line.length;
      if (chars >= bufferBytes) hand();
      return true;
    },
    flush(cb?: (err?: Error) => void): void {
      hand();
      dest.flush(cb);
    },
    flushSync(): void {
      hand();
      dest.flushSync();
    },
  };
  return gathered;
}

/**
 * Writes what the destination holds and waits for its writes, at most `timeoutMs` (a stalled standard
 * output must not hold a stopping process). For a planned exit: lines keep their order.
 */
export function flushLogs(
  destination: { flush?(cb?: (err?: Error) => void): void },
  timeoutMs = 2_000,
): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    try {
      if (destination.flush) destination.flush(done);
      else done();
    } catch {
      done();
    }
  });
}

/**
 * Where the access line of a logger made here (or by `childLogger`) is written by construction: the
 * destination this module gave pino, and the logger's bindings as pino writes them. Public API only
 * (`bindings()`, `stdTimeFunctions`, the stream we created): no pino internal is read.
 */
interface LineSink {
  stream: { write(s: string): unknown };
  /** `,"service":"eproxy",...`: the bindings as they follow `time` on every line. */
  bindings: string;
}
const sinks = new WeakMap<object, LineSink>();

function bindingsJson(log: Logger): string {
  const b = JSON.stringify(log.bindings());
  return b === "{}" ? "" : `,${b.slice(1, -1)}`;
}

/**
 * Creates the root logger; lines written inside a request carry its request id. Without a
 * destination, pino's own choice of standard output (the access line then goes through pino).
 */
export function createLogger(
  level: string,
  destination?: NodeJS.WritableStream | pino.DestinationStream,
): Logger {
  const none = {};
  const logger = pino(
    {
      level,
      base: { service: "eproxy" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      mixin: (obj) => {
        // The access line names its request itself (it is written when the response closes).
        if ((obj as { requestId?: unknown }).requestId !== undefined) return none;
        const ctx = requestContext.getStore();
        return ctx ? { requestId: ctx.requestId } : none;
      },
      // pino's default merge writes the line's fields into the mixin's object: never into `none`.
      mixinMergeStrategy: (obj, mixed) => (mixed === none ? obj : Object.assign(mixed, obj)),
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as pino.DestinationStream | undefined,
  );
  if (destination) {
    sinks.set(logger, { stream: destination as LineSink["stream"], bindings: bindingsJson(logger) });
  }
  return logger;
}

/** A child of a logger made here, whose access lines are still written by construction. */
export function childLogger(log: Logger, bindings: Record<string, string | number | boolean>): Logger {
  const child = log.child(bindings);
  const parent = sinks.get(log);
  if (parent) sinks.set(child, { stream: parent.stream, bindings: bindingsJson(child) });
  return child;
}

/** pino's `time` field (`stdTimeFunctions.isoTime`), formatted once per millisecond. */
let timeMs = -1;
let timeField = "";
function isoTimeField(): string {
  const t = Date.now();
  if (t !== timeMs) {
    timeMs = t;
    timeField = `,"time":"${new Date(t).toISOString()}"`;
  }
  return timeField;
}

/** How the request was framed: `grpc`, `grpc-web`, `connect` or `rest`. */
export function protocolOf(contentType: string | undefined, path: string): string {
  if (contentType?.startsWith("application/grpc")) {
    return contentType.startsWith("application/grpc-web") ? "grpc-web" : "grpc";
  }
  // Connect unary uses plain JSON/proto content types: tell it by the procedure path.
  if (path.startsWith("/eproxy.v1.") || path.startsWith("/grpc.")) return "connect";
  return "rest";
}

/**
 * The code of a request whose answer did not complete (the caller hung up or reset its stream) and
 * that no layer named: the access line's and the request metric's (lower-cased) alike.
 */
export function notCompletedCode(protocol: string): string {
  return protocol === "rest" ? "CLIENT_CLOSED" : "canceled";
}

/** What the server knows of a finished (or abandoned) request. */
export interface AccessRequest {
  method: string | undefined;
  url: string | undefined;
  httpVersion: string;
  contentType: string | undefined;
  contentLength: string | undefined;
}

/**
 * Writes the one access line of a request, at info (a client that hung up included: it is not an
 * eProxy failure, so no stack and no error level). `completed` is false when the response did not
 * finish (client abort, reset).
 */
export function writeAccessLine(
  log: Logger,
  ctx: RequestContext,
  req: AccessRequest,
  status: number,
  completed: boolean,
  durationMs: number,
  responseLength: number | string | string[] | undefined,
): void {
  if (!log.isLevelEnabled("info")) return;
  const a = ctx.access;
  const url = req.url ?? "";
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  const protocol = protocolOf(req.contentType, path);
  const code = completed
    ? (a.code ?? (protocol === "rest" && status < 400 ? "OK" : undefined))
    : (a.code ?? notCompletedCode(protocol));
  const bytesIn = a.bytesIn ?? (req.contentLength !== undefined ? Number(req.contentLength) : undefined);
  const bytesOut =
    a.bytesOut ??
    (typeof responseLength === "number" ? responseLength : Number(responseLength ?? Number.NaN) || undefined);
  const route = a.route ?? path.slice(0, 200);
  const durationMsRounded = Math.round(durationMs * 10) / 10;
  // The fields in pino's order; undefined ones are left out, non-finite numbers written null, by
  // JSON.stringify as by pino.
  const fields = {
    requestId: ctx.requestId,
    clientId: a.clientId,
    method: req.method,
    route,
    protocol,
    code,
    status,
    completed,
    httpVersion: req.httpVersion,
    durationMs: durationMsRounded,
    bytesIn,
    bytesOut,
    teleservice: a.teleservice,
    soapAction: a.soapAction,
    upstreamStatus: a.upstreamStatus,
    correlationId: a.correlationId,
  };
  const sink = sinks.get(log);
  if (!sink) {
    log.info(fields, "request");
    return;
  }
  // The hot path (one line per call): the same line pino writes for `fields`, built by construction
  // (one JSON.stringify of a fixed-shape object): its fields are known and none is a redacted path
  // (pino's generic walk cost ~5 % of a relayed call's CPU, bench/reports/hot-path.md).
  // test/unit/log.test.ts compares the two.
  const json = JSON.stringify(fields);
  sink.stream.write(
    `{"level":"info"${isoTimeField()}${sink.bindings}${json.length > 2 ? `,${json.slice(1, -1)}` : ""},"msg":"request"}\n`,
  );
}
