/**
 * The one HTTPS listener: HTTP/2 with HTTP/1.1 fallback, serving gRPC, gRPC-Web and Connect for
 * every service, gRPC reflection, and the REST facade as the Connect adapter's fallback.
 */
import cluster from "node:cluster";
import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AuthService, file_eproxy_v1_auth } from "../gen/eproxy/v1/auth_pb.ts";
import { file_eproxy_v1_relay, RelayService } from "../gen/eproxy/v1/relay_pb.ts";
import { file_eproxy_v1_trace, TraceService } from "../gen/eproxy/v1/trace_pb.ts";
import { file_google_rpc_error_details } from "../gen/google/rpc/error_details_pb.ts";
import { file_grpc_health_v1_health, Health } from "../gen/grpc/health/v1/health_pb.ts";
import { file_grpc_reflection_v1_reflection } from "../gen/grpc/reflection/v1/reflection_pb.ts";
import { file_grpc_reflection_v1alpha_reflection } from "../gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { startAdminServer } from "./admin-server.ts";
import type { Deps } from "./deps.ts";
import { peerOf } from "./http/credentials.ts";
import { type InternalListenerOptions, startInternalListener } from "./internal-listener.ts";
import { type RequestContext, requestContext, writeAccessLine } from "./log.ts";
import { completedNormally, observeRequest } from "./observe/http.ts";
import { createAuthRoutes } from "./rest/auth-routes.ts";
import { createHealthRoutes } from "./rest/health-routes.ts";
import { createOpenApiRoutes } from "./rest/openapi-routes.ts";
import { createRelayRoutes } from "./rest/relay-routes.ts";
import { createRestRouter, type Route } from "./rest/router.ts";
import { createTraceRoutes } from "./rest/trace-routes.ts";
import { createAuthService } from "./rpc/auth-service.ts";
import { kPeer } from "./rpc/caller.ts";
import {
  CONNECT_VERSION,
  createForwardSoapFastPath,
  forwardSoapFastPathUsable,
  installedConnectVersion,
} from "./rpc/forward-soap-fast-path.ts";
import { createHealthService } from "./rpc/health-service.ts";
import { createErrorInterceptor } from "./rpc/interceptors.ts";
import { registerReflection } from "./rpc/reflection-service.ts";
import { createRelayService } from "./rpc/relay-service.ts";
import { answerParseFailuresAsInvalid, createEnumGuard } from "./rpc/strict-messages.ts";
import { createTraceService } from "./rpc/trace-service.ts";

/** A running eProxy listener. */
export interface EproxyServer {
  /** Bound port (useful when configured with port 0). */
  port: number;
  /** Base URL, e.g. `https://localhost:8443`. */
  url: string;
  /** The in-network listener's URL (`http://…`), when `server.internalListener` is configured. */
  internalUrl?: string;
  /** The admin listener's metrics URL, when `admin.port` is configured. */
  metricsUrl?: string;
  /** Stops accepting, lets in-flight requests finish within the grace period, then closes the stores. */
  close(): Promise<void>;
}

const SAFE_REQUEST_ID = /^[\w.:-]{1,128}$/;

/**
 * The listener's cipher list: TLS 1.3's suites as Node has them, and for TLS 1.2 only ECDHE key
 * exchange (forward secrecy) with AEAD ciphers (no CBC, no SHA-1 MAC, no static RSA).
 */
export const TLS_CIPHERS = [
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "TLS_AES_128_GCM_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** Size of a header list as HTTP/2 counts it (RFC 9113 §6.5.2: name + value + 32 per field). */
function headerListSize(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i + 1 < raw.length; i += 2)
    n += (raw[i] as string).length + (raw[i + 1] as string).length + 32;
  return n;
}

/** The caller's IP: X-Forwarded-For is believed only when the peer is a configured proxy. */
function callerIpOf(req: http2.Http2ServerRequest, trusted: readonly string[]): string {
  const address = req.socket?.remoteAddress ?? "";
  const peer = address.startsWith("::ffff:") ? address.slice(7) : address;
  const xff = req.headers["x-forwarded-for"];
  if (trusted.includes(peer) && typeof xff === "string") {
    const first = xff.split(",")[0]?.trim();
    if (first && /^[\d.:a-fA-F]{2,45}$/.test(first)) return first;
  }
  return peer;
}

/** Routes of the REST facade that later features add (passed in by the composition root). */
export interface ServerOptions {
  /** Extra REST routes (e.g. `/oauth2/...`, `/send/...`). */
  restRoutes?: Route[];
}

/** Starts the listener on the configured address and port. */
export async function startServer(deps: Deps, options: ServerOptions = {}): Promise<EproxyServer> {
  const { config, log } = deps;
  // Aborted when shutdown starts: long-lived streams of ours (health Watch) end with unavailable.
  const shuttingDown = new AbortController();
  const rest = createRestRouter(
    [
      ...createHealthRoutes(deps.health),
      ...createAuthRoutes(deps),
      ...createRelayRoutes(deps),
      ...createTraceRoutes(deps),
      ...createOpenApiRoutes(config.server.publicBaseUrl),
      ...(options.restRoutes ?? []),
    ],
    log,
    deps.traces,
  );
  const relayService = createRelayService({ ...deps, maxMessageBytes: config.server.maxRequestBytes });
  // Outermost first: errors of the enum guard are mapped and traced like any other.
  const interceptors = [createErrorInterceptor(log, deps.traces), createEnumGuard()];
  const contextValues = (req: http2.Http2ServerRequest) => createContextValues().set(kPeer, peerOf(req));
  // Plain gRPC and Connect unary ForwardSoap calls skip Connect's generic machinery (same parts,
  // same answer): the typed clients' relay.
  const jsonOptions = { ignoreUnknownFields: false };
  const fastPathUsable = forwardSoapFastPathUsable();
  if (config.server.forwardSoapFastPath && !fastPathUsable) {
    log.warn(
      { connect: installedConnectVersion(), checked: CONNECT_VERSION },
      "ForwardSoap fast path off: it was checked against another release of @connectrpc/connect",
    );
  }
  const forwardSoapFastPath =
    config.server.forwardSoapFastPath && fastPathUsable
      ? createForwardSoapFastPath({
          impl: relayService,
          interceptors,
          maxBytes: config.server.maxRequestBytes,
          contextValues,
          jsonOptions,
        })
      : () => false;
  const handler = connectNodeAdapter({
    routes(router) {
      router.service(AuthService, createAuthService(deps));
      router.service(RelayService, relayService);
      router.service(TraceService, createTraceService(deps));
      router.service(
        Health,
        createHealthService(
          deps.health,
          [AuthService.typeName, RelayService.typeName, TraceService.typeName],
          shuttingDown.signal,
        ),
      );
      registerReflection(
        router,
        [
          file_grpc_health_v1_health,
          file_eproxy_v1_auth,
          file_eproxy_v1_relay,
          file_eproxy_v1_trace,
          file_grpc_reflection_v1_reflection,
          file_grpc_reflection_v1alpha_reflection,
          // The error details every error carries, so that grpcurl and other reflection clients decode them.
          file_google_rpc_error_details,
        ],
        [AuthService.typeName, RelayService.typeName, TraceService.typeName, Health.typeName],
      );
      answerParseFailuresAsInvalid(router);
    },
    // Strict JSON: an unknown field or enum name is refused, not silently dropped.
    jsonOptions,
    fallback: rest,
    // Connect's default is 4 GiB: cap what one RPC message may be, both ways.
    readMaxBytes: config.server.maxRequestBytes,
    writeMaxBytes: config.server.maxRequestBytes,
    interceptors,
    contextValues: (req) => contextValues(req as http2.Http2ServerRequest),
  });

  const server = http2.createSecureServer(
    {
      cert: deps.tls.cert,
      key: deps.tls.key,
      allowHTTP1: true,
      // Nagle off, as node:http does by default (a TLS server does not): an answer written as headers
      // then body chunks otherwise waits for the caller's delayed ACK (~40 ms) now and then.
      noDelay: true,
      minVersion: "TLSv1.2",
      ciphers: TLS_CIPHERS,
      honorCipherOrder: true,
      // HTTP/1.1's header limit (HTTP/2's is checked per request below).
      maxHeaderSize: config.server.maxHeaderBytes,
      // Backends may authenticate with a certificate; a missing one is not a TLS error here,
      // the RPC layer decides (API key or certificate).
      ...(deps.tls.clientCa ? { ca: deps.tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}),
      settings: {
        maxHeaderListSize: config.server.maxHeaderBytes,
        initialWindowSize: config.server.http2.streamWindowBytes,
      },
      // Node's 10 MB default resets big in-flight uploads with ENHANCE_YOUR_CALM.
      maxSessionMemory: 64,
    } as http2.SecureServerOptions,
    (req, res) => {
      // SETTINGS_MAX_HEADER_LIST_SIZE is only advisory to the peer: nghttp2 does not enforce it.
      if (req.httpVersionMajor === 2 && headerListSize(req.rawHeaders) > config.server.maxHeaderBytes) {
        res.writeHead(431, { "content-type": "application/problem+json", "cache-control": "no-store" });
        res.end(
          JSON.stringify({
            type: "urn:eproxy:error:header-too-large",
            title: "Request header fields too large",
            status: 431,
            detail: `headers larger than ${config.server.maxHeaderBytes} bytes`,
          }),
        );
        return;
      }
      const given = req.headers["x-request-id"];
      const requestId = typeof given === "string" && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
      res.setHeader("x-request-id", requestId);
      const started = performance.now();
      const socket = req.socket as TLSSocket;
      const http1 = trackHttp1(socket, res);
      const ctx: RequestContext = {
        requestId,
        callerIp: callerIpOf(req, config.server.trustedProxies),
        access: {},
      };
      // One listener for what the request leaves behind. "close" also fires when the client hung up
      // before the answer was complete (no "finish" then).
      res.once("close", () => {
        if (http1) http1Done(socket);
        writeAccessLine(
          log,
          ctx,
          {
            method: req.method,
            url: req.url,
            httpVersion: req.httpVersion,
            contentType: req.headers["content-type"],
            contentLength: req.headers["content-length"],
          },
          res.statusCode,
          completedNormally(req, res),
          performance.now() - started,
          res.getHeader("content-length"),
        );
        if (req.httpVersionMajor === 2) setImmediate(releaseStream, req, res);
      });
      const observed = observeRequest(deps.telemetry, req, res, ctx);
      if (observed) requestContext.run(ctx, () => observed.run(() => serve(req, res)));
      else requestContext.run(ctx, serve, req, res);
    },
  );

  /**
   * REST paths that cannot be an RPC (`/<package.Service>/<Method>`) go to the REST router at once;
   * everything else through the ForwardSoap fast path, then Connect (the REST router as its fallback).
   */
  function serve(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
    if (req.url?.startsWith("/send/")) rest(req, res);
    else if (!forwardSoapFastPath(req, res)) handler(req, res);
  }

  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<TLSSocket>();
  // In-flight HTTP/1.1 requests per socket, so that shutdown closes idle keep-alive sockets at once
  // and busy ones right after their response.
  const http1Active = new Map<TLSSocket, number>();
  let draining = false;
  /** Counts an HTTP/1.1 request in (true), to be counted out by `http1Done` when it closes. */
  function trackHttp1(socket: TLSSocket, res: http2.Http2ServerResponse): boolean {
    if (socket.alpnProtocol === "h2") return false;
    http1Active.set(socket, (http1Active.get(socket) ?? 0) + 1);
    if (draining) res.setHeader("connection", "close");
    return true;
  }
  function http1Done(socket: TLSSocket): void {
    const n = (http1Active.get(socket) ?? 1) - 1;
    http1Active.set(socket, n);
    if (draining && n === 0) socket.end();
  }
  server.on("session", (s) => {
    // The connection window is not a SETTINGS value: it is raised by a WINDOW_UPDATE on stream 0.
    s.setLocalWindowSize(config.server.http2.connectionWindowBytes);
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  server.on("secureConnection", (s: TLSSocket) => {
    sockets.add(s);
    s.once("close", () => {
      sockets.delete(s);
      http1Active.delete(s);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.server.port, config.server.listenAddress, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // The in-network listener serves the same requests: the handler given to createSecureServer.
  const internal = config.server.internalListener
    ? await startInternalListener({
        ...config.server.internalListener,
        onRequest: server.listeners("request")[0] as InternalListenerOptions["onRequest"],
        settings: {
          maxHeaderListSize: config.server.maxHeaderBytes,
          initialWindowSize: config.server.http2.streamWindowBytes,
        },
        maxHeaderBytes: config.server.maxHeaderBytes,
        log,
      })
    : undefined;
  const host =
    config.server.listenAddress === "0.0.0.0" || config.server.listenAddress === "::"
      ? "localhost"
      : config.server.listenAddress;
  log.info(
    { port, address: config.server.listenAddress },
    "eProxy listening (gRPC, gRPC-Web, Connect, REST)",
  );

  // With server.workers the primary serves /metrics for every worker (prom-client aggregation).
  const admin =
    deps.scrapeMetrics && config.admin.port !== undefined && !cluster.isWorker
      ? await startAdminServer({
          listenAddress: config.admin.listenAddress,
          port: config.admin.port,
          log,
          scrape: deps.scrapeMetrics,
        })
      : undefined;

  let closing: Promise<void> | undefined;
  return {
    port,
    url: `https://${host}:${port}`,
    ...(admin ? { metricsUrl: admin.metricsUrl } : {}),
    ...(internal ? { internalUrl: internal.url } : {}),
    close() {
      closing ??= (async () => {
        // 1. Readiness first: /readyz 503 and gRPC health NOT_SERVING, so that load balancers stop
        // sending new work, for drainDelayMs while everything still answers.
        deps.health.startDraining();
        log.info({ drainDelayMs: config.server.drainDelayMs }, "draining: readiness off");
        if (config.server.drainDelayMs > 0)
          await new Promise((r) => setTimeout(r, config.server.drainDelayMs));
        shuttingDown.abort();
        // 2. Stop accepting; GOAWAY; CIBA hands over; streams end unavailable; 3. connections close.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        const internalClosed = internal?.close(config.server.shutdownGraceMs);
        // GOAWAY: HTTP/2 clients stop opening streams, in-flight streams finish.
        for (const s of sessions) s.close();
        // CIBA hands its requests over to the other replicas and ends WatchCiba streams with
        // UNAVAILABLE (Connect's retry signal), so they finish now instead of being cut at the grace.
        const cibaDrained = deps.ciba.drain().catch((err: unknown) => log.warn({ err }, "CIBA drain failed"));
        const grace = setTimeout(() => {
          for (const s of sessions) s.destroy();
          for (const s of sockets) s.destroy();
        }, config.server.shutdownGraceMs);
        grace.unref();
        draining = true;
        // Idle HTTP/1.1 keep-alive sockets would hold close() forever.
        for (const s of sockets) if (s.alpnProtocol !== "h2" && !http1Active.get(s)) s.end();
        await closed;
        await internalClosed;
        await cibaDrained;
        clearTimeout(grace);
        await admin?.close();
        await deps.close();
        log.info("eProxy stopped");
      })();
      return closing;
    },
  };
}

/**
 * Lets go of what an HTTP/2 request left on its stream once the stream is closed.
 *
 * Node keeps a closed stream's objects until the next full collection (1.0–1.3 KB per request in a
 * bare `http2.createSecureServer`, `--trace-gc-nvp` promoted bytes), and with them everything
 * their listeners reach: the request's context, the relay's state, the access line's closure. Each
 * relayed call then put 2.2–3.1 KB into the old generation (HTTP/1.1: 0.3), which filled it every few
 * seconds and made full collections of 20–50 ms under HTTP/2 load. By the next turn after "close"
 * every listener has run (Node emits it last, after "end" and "finish"); an "error" listener stays so
 * that a late error cannot become an uncaught exception.
 */
function releaseStream(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
  for (const e of [res.stream, req, res] as NodeJS.EventEmitter[]) {
    if (!e) continue;
    e.removeAllListeners();
    e.on("error", ignore);
  }
}

function ignore(): void {}
