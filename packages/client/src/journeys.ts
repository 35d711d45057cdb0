/**
 * The common journeys: sign a professional in by CIBA (`loginWithCiba`) and relay a SOAP call
 * (`relaySoap`, through ForwardSoap or through `/send` with a streamed body).
 */
import type { IncomingHttpHeaders } from "node:http2";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { EproxyClient } from "./client.js";
import { cibaStatusName, parseChannel } from "./enums.js";
import { EproxyRelayError, eproxyErrorOf } from "./errors.js";
import {
  Channel,
  CibaStatus,
  type StartCibaResponse,
  type WatchCibaResponse,
} from "./gen/eproxy/v1/auth_pb.js";
import type { ForwardSoapResponse } from "./gen/eproxy/v1/relay_pb.js";
import type { Session } from "./gen/eproxy/v1/session_pb.js";

/** Input of `loginWithCiba`. */
export interface LoginWithCibaOptions {
  /** National id of the professional ("8" + RPPS or "0" + ADELI). */
  nationalId: string;
  /** Your client id; eProxy takes it from your credentials when absent. */
  clientId?: string;
  /** How the professional approves (default MOBILE). */
  channel?: Channel | "CARD" | "MOBILE";
  /** Two digits shown to the professional; generated when absent. */
  bindingMessage?: string;
  /** Scope to request (default: eProxy's configured PSC scope). */
  scope?: string;
  /**
   * Do not reuse a live session of this professional for your client: PSC pushes a new request and
   * a new session (with its token) is created beside the live one (StartCibaRequest.new_session).
   * Default `false`: a live session is reused and no push is sent, so a backend that restarts does
   * not push the professional's phone again; it then rejects with CibaSessionReusedError, because
   * eProxy stores only a hash of session tokens and cannot hand the token out twice. A pending
   * request is reused either way (no duplicate push).
   */
  newSession?: boolean;
  /** Cancels the start and the watch. */
  signal?: AbortSignal;
  /** Called with StartCiba's answer (e.g. to show the binding message). */
  onStarted?: (started: StartCibaResponse) => void;
  /** Called with every state WatchCiba reports. */
  onStatus?: (event: WatchCibaResponse) => void;
}

/** A successful CIBA login. */
export interface CibaLogin {
  /** The session. */
  session: Session;
  /** The session token (`eps_…`) to send on later calls; store it, eProxy gives it out once. */
  sessionToken: string;
  /** True when no new push was sent (a pending request of this professional was reused). */
  reused: boolean;
  /** The CIBA request id. */
  authReqId: string;
}

/**
 * `loginWithCiba` found a live session of this professional for your client and eProxy reused it
 * (no push was sent), but eProxy cannot give its token again: it keeps only a hash of session
 * tokens, and handed the token out when the session was created. Use the token you stored then,
 * call `loginWithCiba` again with `newSession: true` (a new push, a new session beside the live one),
 * or end the live session with Logout (`client.auth.logout`, `DELETE /oauth2/session`) when you still
 * have its token.
 */
export class CibaSessionReusedError extends Error {
  /** The live session eProxy reused (identity and expiries; no token). */
  readonly session: Session;
  /**
   * "" when a live session was reused at StartCiba; the request id when a pending request was reused
   * and, once approved, its token had already been handed to whoever watched it first.
   */
  readonly authReqId: string;

  constructor(session: Session, authReqId: string) {
    super(
      authReqId === ""
        ? "eProxy reused this professional's live session with your client (no push was sent) and does " +
            "not hand its session token out again (it keeps only a hash). Use the session token you " +
            "stored when the session was created, or call loginWithCiba again with newSession: true " +
            "(a new push and a new session), or end the live session with Logout."
        : "eProxy reused this professional's pending CIBA request (no new push was sent); it was approved " +
            "but its session token was already handed to the caller that watched it first (eProxy keeps " +
            "only a hash). Use that token, or call loginWithCiba again with newSession: true.",
    );
    this.name = "CibaSessionReusedError";
    this.session = session;
    this.authReqId = authReqId;
  }
}

/** A CIBA login that ended in DENIED, EXPIRED or FAILED. */
export class CibaLoginError extends Error {
  /** The final state. */
  readonly status: CibaStatus;
  /** The CIBA request id. */
  readonly authReqId: string;

  constructor(status: CibaStatus, authReqId: string, message: string) {
    super(`CIBA login ${cibaStatusName(status)}${message ? `: ${message}` : ""}`);
    this.name = "CibaLoginError";
    this.status = status;
    this.authReqId = authReqId;
  }
}

function channelOf(c: LoginWithCibaOptions["channel"]): Channel {
  if (c === undefined) return Channel.UNSPECIFIED;
  return typeof c === "string" ? (parseChannel(c) ?? Channel.UNSPECIFIED) : c;
}

/**
 * Signs a professional in: StartCiba, then WatchCiba until a final state. Resolves with the session
 * and its token once APPROVED; rejects with CibaSessionReusedError when eProxy reused a live session
 * (see `newSession`), CibaLoginError for DENIED, EXPIRED or FAILED, and a ConnectError (code
 * Canceled) when `signal` aborts.
 */
export async function loginWithCiba(client: EproxyClient, options: LoginWithCibaOptions): Promise<CibaLogin> {
  const callOptions = options.signal ? { signal: options.signal } : {};
  const started = await client.auth.startCiba(
    {
      clientId: options.clientId ?? "",
      nationalId: options.nationalId,
      bindingMessage: options.bindingMessage ?? "",
      channel: channelOf(options.channel),
      ...(options.scope !== undefined ? { scope: options.scope } : {}),
      newSession: options.newSession === true,
    },
    callOptions,
  );
  options.onStarted?.(started);
  if (started.session) {
    // A live session was reused: eProxy never has its token to give (it keeps a hash). A future
    // server that did would be honoured.
    if (started.session.sessionToken) {
      return {
        session: started.session,
        sessionToken: started.session.sessionToken,
        reused: true,
        authReqId: "",
      };
    }
    throw new CibaSessionReusedError(started.session, "");
  }
  for await (const event of client.auth.watchCiba({ authReqId: started.authReqId }, callOptions)) {
    options.onStatus?.(event);
    if (event.status === CibaStatus.APPROVED && event.session) {
      if (!event.session.sessionToken) throw new CibaSessionReusedError(event.session, started.authReqId);
      return {
        session: event.session,
        sessionToken: event.session.sessionToken,
        reused: started.reused,
        authReqId: started.authReqId,
      };
    }
    if (
      event.status === CibaStatus.DENIED ||
      event.status === CibaStatus.EXPIRED ||
      event.status === CibaStatus.FAILED
    ) {
      throw new CibaLoginError(event.status, started.authReqId, event.errorMessage);
    }
  }
  throw new CibaLoginError(CibaStatus.FAILED, started.authReqId, "the watch ended before a final state");
}

/** A SOAP body: text, bytes, or a stream of bytes (sent as it is read, never buffered whole). */
export type SoapBody = string | Uint8Array | AsyncIterable<Uint8Array> | NodeJS.ReadableStream;

/** What both relay paths need. */
export interface RelaySoapCommon {
  /** Session token (`eps_…`). */
  sessionToken: string;
  /** Configured teleservice name (`insi`, `dmp`, ...). */
  service: string;
  /** Path under the teleservice's base URL, with its query string (may be empty). */
  path?: string;
  /** Content-Type with every parameter (action, boundary, start, ...). */
  contentType: string;
  /** SOAP 1.1 SOAPAction, when used. */
  soapAction?: string;
  /** Extra end-to-end headers for the teleservice. */
  headers?: Record<string, string>;
  /** Cancels the call (and the upstream call eProxy makes for it). */
  signal?: AbortSignal;
}

/** Relay through the ForwardSoap RPC: the body is one message (bounded by eProxy's maxRequestBytes). */
export interface ForwardSoapInput extends RelaySoapCommon {
  via: "forwardSoap";
  body: string | Uint8Array;
}

/** Relay through `POST /send/{service}/{path}`: the body and the answer are streamed. */
export interface SendSoapInput extends RelaySoapCommon {
  via?: "send";
  body: SoapBody;
}

/**
 * The teleservice's answer through `/send`, untouched: a SOAP fault of the teleservice (HTTP 500
 * included) is an answer too. eProxy's own failures are thrown as EproxyRelayError.
 */
export interface SendSoapResponse {
  /** HTTP status of the teleservice's answer. */
  status: number;
  /** Response headers. */
  headers: IncomingHttpHeaders;
  /** Content-Type of the answer. */
  contentType: string;
  /** The body, as it arrives. Read it (or destroy it) to release the stream. */
  body: Readable;
  /** Reads the whole body as UTF-8 text. */
  text(): Promise<string>;
}

function bytes(v: string | Uint8Array): Uint8Array {
  return typeof v === "string" ? new TextEncoder().encode(v) : v;
}

function trimSlashes(p: string): string {
  return p.replace(/^\/+/, "");
}

/**
 * Relays a SOAP call to a teleservice with the session's credentials. `via: "forwardSoap"` uses the
 * RPC and resolves with ForwardSoapResponse; otherwise (`via: "send"`, the default) the body is
 * streamed to `/send/{service}/{path}` and the answer's body is a stream. Whatever the teleservice
 * answers (SOAP faults and HTTP 500 included) is returned; eProxy's own refusals and failures
 * (SESSION_INVALID, TOO_MANY_REQUESTS, UPSTREAM_UNAVAILABLE, ...) reject with EproxyRelayError.
 */
export function relaySoap(client: EproxyClient, input: ForwardSoapInput): Promise<ForwardSoapResponse>;
export function relaySoap(client: EproxyClient, input: SendSoapInput): Promise<SendSoapResponse>;
export async function relaySoap(
  client: EproxyClient,
  input: ForwardSoapInput | SendSoapInput,
): Promise<ForwardSoapResponse | SendSoapResponse> {
  if (input.via === "forwardSoap") {
    return forwardSoap(client, input);
  }
  return send(client, input);
}

async function forwardSoap(client: EproxyClient, input: ForwardSoapInput): Promise<ForwardSoapResponse> {
  try {
    return await client.relay.forwardSoap(
      {
        sessionToken: input.sessionToken,
        service: input.service,
        path: input.path ?? "",
        contentType: input.contentType,
        soapAction: input.soapAction ?? "",
        body: bytes(input.body),
        headers: Object.entries(input.headers ?? {}).map(([name, value]) => ({ name, value })),
      },
      input.signal ? { signal: input.signal } : {},
    );
  } catch (err) {
    const e = eproxyErrorOf(err);
    if (!e) throw err;
    throw new EproxyRelayError(
      {
        code: e.code,
        message: e.message,
        via: "forwardSoap",
        ...(e.retryAfterSeconds !== undefined ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
      },
      { cause: err },
    );
  }
}

/** eProxy's SOAP faults are small; a larger body is not read further. */
const MAX_FAULT_BYTES = 64 * 1024;

/** The fault's reason (SOAP 1.2 Reason/Text, SOAP 1.1 faultstring) or a problem document's detail. */
function faultReason(body: string): string {
  const soap = /<(?:[\w-]+:)?(?:Text|faultstring)\b[^>]*>([^<]*)</.exec(body)?.[1];
  if (soap !== undefined) {
    return soap.replace(/&(lt|gt|amp|quot|apos);/g, (_, n: string) =>
      n === "lt" ? "<" : n === "gt" ? ">" : n === "amp" ? "&" : n === "quot" ? '"' : "'",
    );
  }
  try {
    const problem = JSON.parse(body) as { detail?: unknown };
    return typeof problem.detail === "string" ? problem.detail : "";
  } catch {
    return "";
  }
}

async function readBounded(stream: AsyncIterable<Buffer>, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    chunks.push(c);
    size += c.length;
    if (size >= max) break;
  }
  return Buffer.concat(chunks).subarray(0, max).toString("utf8");
}

async function send(client: EproxyClient, input: SendSoapInput): Promise<SendSoapResponse> {
  input.signal?.throwIfAborted();
  const path = `/send/${encodeURIComponent(input.service)}/${trimSlashes(input.path ?? "")}`;
  const stream = await client.request("POST", path, {
    ...input.headers,
    "content-type": input.contentType,
    authorization: `Bearer ${input.sessionToken}`,
    ...(input.soapAction !== undefined ? { soapaction: input.soapAction } : {}),
  });
  const abort = () => stream.close(0x8 /* NGHTTP2_CANCEL */);
  input.signal?.addEventListener("abort", abort, { once: true });
  const body: SoapBody = input.body;
  const source = typeof body === "string" || body instanceof Uint8Array ? Readable.from([bytes(body)]) : body;
  // Upload and answer run together: a teleservice (or eProxy refusing the call) may answer before
  // the whole body is sent.
  const uploaded = pipeline(source as AsyncIterable<Uint8Array>, stream).catch(() => {});
  try {
    const headers = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
      stream.once("response", resolve);
      stream.once("error", reject);
      stream.once("close", () =>
        reject(new Error(`stream closed before an answer (code ${stream.rstCode})`)),
      );
    });
    void uploaded;
    const status = Number(headers[":status"]);
    const contentType = String(headers["content-type"] ?? "");
    const eproxyError = headers["x-eproxy-error"];
    if (typeof eproxyError === "string" && eproxyError !== "") {
      // eProxy's own answer (a teleservice's x-eproxy-* headers never reach the caller).
      const text = await readBounded(stream as AsyncIterable<Buffer>, MAX_FAULT_BYTES).catch(() => "");
      if (!stream.destroyed) stream.close(0x8 /* NGHTTP2_CANCEL */);
      const retry = Number(headers["retry-after"] ?? Number.NaN);
      throw new EproxyRelayError({
        code: eproxyError,
        message: faultReason(text),
        via: "send",
        httpStatus: status,
        ...(Number.isFinite(retry) ? { retryAfterSeconds: retry } : {}),
      });
    }
    return {
      status,
      headers,
      contentType,
      body: stream,
      async text() {
        const chunks: Buffer[] = [];
        for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
        return Buffer.concat(chunks).toString("utf8");
      },
    };
  } finally {
    stream.once("close", () => input.signal?.removeEventListener("abort", abort));
  }
}
