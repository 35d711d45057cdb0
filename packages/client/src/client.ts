/**
 * `createEproxyClient`: one HTTP/2 connection to eProxy (TLS, or cleartext h2c for the in-network
 * listener) shared by the AuthService, RelayService and TraceService clients and by the `/send`
 * relay, authenticated with an API key or a client certificate.
 */
import type { ClientHttp2Stream, OutgoingHttpHeaders, SecureClientSessionOptions } from "node:http2";
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AuthService } from "./gen/eproxy/v1/auth_pb.js";
import { RelayService } from "./gen/eproxy/v1/relay_pb.js";
import { TraceService } from "./gen/eproxy/v1/trace_pb.js";

/** PEM text or bytes. */
export type Pem = string | Uint8Array;

/** Options of `createEproxyClient`. */
export interface EproxyClientOptions {
  /** eProxy's base URL: `https://eproxy.example:8443`, or `http://eproxy:8080` for the in-network listener. */
  baseUrl: string;
  /** API key (`epk_…`), sent as `x-eproxy-api-key`. Either this or `cert` + `key`. */
  apiKey?: string;
  /** Client certificate chain (PEM) whose CN is the client id. Goes with `key`. */
  cert?: Pem;
  /** Private key of `cert` (PEM). */
  key?: Pem;
  /** Trust anchors for eProxy's server certificate (PEM); the system's when absent. */
  ca?: Pem;
  /** Wire protocol of the RPCs: `grpc` (default) or `connect` (both over HTTP/2). */
  protocol?: "grpc" | "connect";
  /** Extra Connect interceptors; the first one of the array is the outermost. */
  interceptors?: Interceptor[];
  /** Deadline applied to every RPC that sets none (milliseconds). */
  defaultTimeoutMs?: number;
}

/** A connected eProxy client. */
export interface EproxyClient {
  /** The base URL it calls. */
  readonly baseUrl: string;
  /** eproxy.v1.AuthService (CIBA, code flow, sessions). */
  readonly auth: Client<typeof AuthService>;
  /** eproxy.v1.RelayService (ForwardSoap). */
  readonly relay: Client<typeof RelayService>;
  /** eproxy.v1.TraceService (ListTraces). */
  readonly traces: Client<typeof TraceService>;
  /** The Connect transport, for services or interceptors of your own. */
  readonly transport: Transport;
  /**
   * Opens a raw HTTP/2 request on the client's connection with its credentials (used by
   * `relaySoap` for `/send`); `path` starts with `/`.
   */
  request(method: string, path: string, headers?: OutgoingHttpHeaders): Promise<ClientHttp2Stream>;
  /** Closes the connection; calls in flight fail. */
  close(): void;
}

function text(v: Pem | undefined): string | undefined {
  return v === undefined ? undefined : typeof v === "string" ? v : Buffer.from(v).toString("utf8");
}

/** Creates a client for eProxy (Node.js). Throws a TypeError when the credentials are incomplete. */
export function createEproxyClient(options: EproxyClientOptions): EproxyClient {
  const url = new URL(options.baseUrl);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TypeError(`baseUrl must be an https:// or http:// URL, got ${url.protocol}`);
  }
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError("cert and key go together");
  }
  if (options.apiKey === undefined && options.cert === undefined) {
    throw new TypeError("an apiKey or a client certificate (cert + key) is required");
  }
  if (url.protocol === "http:" && options.cert !== undefined) {
    throw new TypeError("a client certificate needs an https:// baseUrl");
  }
  const baseUrl = url.href.replace(/\/+$/, "");
  const tls: SecureClientSessionOptions = {};
  const ca = text(options.ca);
  const cert = text(options.cert);
  const key = text(options.key);
  if (ca !== undefined) tls.ca = ca;
  if (cert !== undefined) tls.cert = cert;
  if (key !== undefined) tls.key = key;
  const sessionManager = new Http2SessionManager(baseUrl, {}, url.protocol === "https:" ? tls : {});
  const authHeaders: Record<string, string> =
    options.apiKey !== undefined ? { "x-eproxy-api-key": options.apiKey } : {};
  const apiKeyInterceptor: Interceptor = (next) => (req) => {
    for (const [k, v] of Object.entries(authHeaders)) req.header.set(k, v);
    return next(req);
  };
  // The API key is set by the innermost interceptor, so user interceptors see the request as sent.
  const interceptors = [...(options.interceptors ?? []), apiKeyInterceptor];
  const common = {
    baseUrl,
    httpVersion: "2" as const,
    sessionManager,
    interceptors,
    ...(options.defaultTimeoutMs !== undefined ? { defaultTimeoutMs: options.defaultTimeoutMs } : {}),
  };
  const transport =
    options.protocol === "connect" ? createConnectTransport(common) : createGrpcTransport(common);
  return {
    baseUrl,
    auth: createClient(AuthService, transport),
    relay: createClient(RelayService, transport),
    traces: createClient(TraceService, transport),
    transport,
    request(method, path, headers = {}) {
      return sessionManager.request(method, path, { ...headers, ...authHeaders }, {});
    },
    close() {
      sessionManager.abort();
    },
  };
}
