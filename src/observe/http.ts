/**
 * One incoming request, observed: its span (child of the caller's `traceparent`) and its sample of
 * `eproxy_request_duration_seconds`, both completed when the response closes, with the route and
 * code that the layers serving it noted for the access line (`RequestContext.access`).
 */
import { protocolOf, type RequestContext } from "../log.ts";
import { noopMetrics, type Telemetry } from "./telemetry.ts";

/** The parts of a Node request and response that are read. */
interface ObservedRequest {
  method?: string;
  url?: string;
  headers: Record<string, string | string[] | undefined>;
}
interface ObservedResponse {
  statusCode: number;
  writableFinished: boolean;
  once(event: "close", listener: () => void): unknown;
}

const passThrough = { run: <T>(fn: () => T): T => fn() };

/**
 * The metric's labels: the RPC (`/eproxy.v1.AuthService/StartCiba`) or the REST route with its
 * method (`POST /send/:service/*`), `unmatched` when nothing was routed (never the raw path, which
 * carries ids); the code in lower case (`ok`, `not_found`, `upstream_unavailable`), or `http_<status>`
 * when no layer named one, `aborted` when the response was cut.
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
  const code = noted ?? (!completed ? "aborted" : status < 400 ? "ok" : `http_${status}`);
  return { route, protocol, code };
}

/** Starts observing a request; run the handler through the returned `run`. */
export function observeRequest(
  t: Telemetry,
  req: ObservedRequest,
  res: ObservedResponse,
  ctx: RequestContext,
): { run<T>(fn: () => T): T } {
  if (t.metrics === noopMetrics && !t.tracing.enabled) return passThrough;
  const started = performance.now();
  const span = t.tracing.startRequest(
    req.headers,
    t.tracing.enabled ? { "http.request.method": req.method ?? "", "eproxy.request_id": ctx.requestId } : {},
  );
  res.once("close", () => {
    const status = res.statusCode;
    const { route, protocol, code } = requestLabels(req, status, res.writableFinished, ctx);
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
