/**
 * The common journeys: sign a professional in by CIBA (`loginWithCiba`) and relay a SOAP call
 * (`relaySoap`, through ForwardSoap or through `/send` with a streamed body).
 */
import type { IncomingHttpHeaders } from "node:http2";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { EproxyClient } from "./client.js";
import { cibaStatusName, parseChannel } from "./enums.js";
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
  /**
   * The session token (`eps_…`) to send on later calls. `undefined` when eProxy reused a live session
   * of this professional for your client: you received its token when that session was created.
   */
  sessionToken: string | undefined;
  /** True when no new push was sent (a live session or a pending request was reused). */
  reused: boolean;
  /** The CIBA request id ("" when a live session was reused). */
  authReqId: string;
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
 * once APPROVED; rejects with CibaLoginError for DENIED, EXPIRED or FAILED, and with a ConnectError
 * (code Canceled) when `signal` aborts.
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
    },
    callOptions,
  );
  options.onStarted?.(started);
  if (started.session) {
    return {
      session: started.session,
      sessionToken: started.session.sessionToken || undefined,
      reused: true,
      authReqId: "",
    };
  }
  for await (const event of client.auth.watchCiba({ authReqId: started.authReqId }, callOptions)) {
    options.onStatus?.(event);
    if (event.status === CibaStatus.APPROVED && event.session) {
      return {
        session: event.session,
        sessionToken: event.session.sessionToken || undefined,
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

/** The teleservice's answer through `/send`. */
export interface SendSoapResponse {
  /** HTTP status (eProxy's own failures are SOAP faults with a 4xx/5xx status). */
  status: number;
  /** Response headers. */
  headers: IncomingHttpHeaders;
  /** Content-Type of the answer. */
  contentType: string;
  /** eProxy's error code when eProxy itself failed the call (from `x-eproxy-error`). */
  eproxyError: string | undefined;
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
 * streamed to `/send/{service}/{path}` and the answer's body is a stream.
 */
export function relaySoap(client: EproxyClient, input: ForwardSoapInput): Promise<ForwardSoapResponse>;
export function relaySoap(client: EproxyClient, input: SendSoapInput): Promise<SendSoapResponse>;
export async function relaySoap(
  client: EproxyClient,
  input: ForwardSoapInput | SendSoapInput,
): Promise<ForwardSoapResponse | SendSoapResponse> {
  if (input.via === "forwardSoap") {
    return client.relay.forwardSoap(
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
  }
  return send(client, input);
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
    const contentType = String(headers["content-type"] ?? "");
    const eproxyError = headers["x-eproxy-error"];
    return {
      status: Number(headers[":status"]),
      headers,
      contentType,
      eproxyError: typeof eproxyError === "string" ? eproxyError : undefined,
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
