/**
 * One incoming request, observed: its span (child of the caller's `traceparent`) and its sample of
 * `eproxy_request_duration_seconds`, both completed when the response closes, with the route and
 * code that the layers serving it noted for the access line (`RequestContext.access`).
 */
import { notCompletedCode, protocolOf, type RequestContext } from "../log.ts";
import { noopMetrics, type Telemetry } from "./telemetry.ts";

/** The parts of a Node request and response that are read. */
interface ObservedRequest {
  method?: string;
  url?: string;
  httpVersionMajor?: number;
  headers: Record<string, string | string[] | undefined>;
}
interface ObservedResponse {
  statusCode: number;
  writableFinished: boolean;
  /** The HTTP/2 stream (absent on HTTP/1.1). */
  stream?: { rstCode?: number } | undefined;
  once(event: "close", listener: () => void): unknown;
}

/**
 * Whether the answer reached its end without a reset: what the access line and the request metric
 * both call completed. On HTTP/2 `writableFinished` also reads true for a stream the caller reset
 * (RST_STREAM CANCEL): its `rstCode` tells the two apart (0 = NO_ERROR).
 */
export function completedNormally(req: ObservedRequest, res: ObservedResponse): boolean {
  if (!res.writableFinished) return false;
  return req.httpVersionMajor !== 2 || (res.stream?.rstCode ?? 0) === 0;
}

/**
 * The metric's labels: the RPC (`/eproxy.v1.AuthService/StartCiba`) or the REST route with its
 * method (`POST /send/:service/*`), `unmatched` when nothing was routed (never the raw path, which
 * carries ids); the code in lower case (`ok`, `not_found`, `upstream_unavailable`), or `http_<status>`
 * when no layer named one; when the answer did not complete (the caller hung up or reset its HTTP/2
 * stream) and no layer named a code, `client_closed` (REST) or `canceled` (RPC), as the access line.
 */
export function requestLabels(
  req: ObservedRequest,
  status: number,
  completed: boolean,
  ctx: RequestContext,
): { route: string; protocol: string; code: string } {
  const url = req.url ?? "";
  const q = url.indexOf("?");
  const protocol = protocolOf(
    typeof req.headers["content-type"] === "string" ? req.headers["content-type"] : undefined,
    q < 0 ? url : url.slice(0, q),
  );
  const routed = ctx.access.route;
  const route = routed ? (protocol === "rest" ? `${req.method ?? ""} ${routed}` : routed) : "unmatched";
  const noted = ctx.access.code?.toLowerCase();
  const code =
    noted ?? (!completed ? notCompletedCode(protocol).toLowerCase() : status < 400 ? "ok" : `http_${status}`);
  return { route, protocol, code };
}

/**
 * Starts observing a request; run the handler through the returned `run`. Undefined when neither
 * metrics nor tracing are on (nothing to observe).
 */
export function observeRequest(
  t: Telemetry,
  req: ObservedRequest,
  res: ObservedResponse,
  ctx: RequestContext,
): { run<T>(fn: () => T): T } | undefined {
  if (t.metrics === noopMetrics && !t.tracing.enabled) return undefined;
  const started = performance.now();
  const span = t.tracing.startRequest(
    req.headers,
    t.tracing.enabled ? { "http.request.method": req.method ?? "", "eproxy.request_id": ctx.requestId } : {},
  );
  res.once("close", () => {
    const status = res.statusCode;
    const { route, protocol, code } = requestLabels(req, status, completedNormally(req, res), ctx);
    t.metrics.request({ route, protocol, code, seconds: (performance.now() - started) / 1000 });
    const clientId = ctx.access.clientId;
    span.end({
      route,
      status,
      code,
      attributes: { "eproxy.protocol": protocol, ...(clientId ? { "eproxy.client_id": clientId } : {}) },
    });
  });
  return span;
}
