/**
 * A minimal router for the REST facade, served as the Connect adapter's fallback: exact segments,
 * `:param` segments and a trailing `*` rest segment. Anything thrown becomes a problem+json answer.
 */
import type { Logger } from "pino";
import { EproxyError } from "../errors.ts";
import { noteAccess, requestContext } from "../log.ts";
import { recordRefusal } from "../trace/refusals.ts";
import type { Traces } from "../trace/traces.ts";
import { callerIdOf } from "./caller.ts";
import { sendProblem } from "./problem.ts";
import type { NodeRequest, NodeResponse } from "./respond.ts";

/** What a REST handler receives. */
export interface RestContext {
  /** Raw request. */
  req: NodeRequest;
  /** Raw response. */
  res: NodeResponse;
  /** Parsed URL (path and query). */
  readonly url: URL;
  /** The query with its `?` (`url.search`), `""` without one. */
  search: string;
  /** Path parameters by name; `*` holds the rest of the path. */
  params: Record<string, string>;
  /** Request id of this request. */
  requestId: string;
}

/** A REST route. */
export interface Route {
  /** HTTP method. */
  method: "GET" | "POST" | "DELETE" | "PUT";
  /** Path pattern such as `/oauth2/ciba/:authReqId` or `/send/:service/*`. */
  pattern: string;
  /** Handler; throw an EproxyError to answer a problem document. */
  handler: (ctx: RestContext) => Promise<void> | void;
  /** Custom error renderer (the SOAP relay answers faults instead of problem documents). */
  onError?: (ctx: RestContext, err: unknown) => void;
}

function match(pattern: string[], segments: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    if (p === "*") {
      params["*"] = segments.slice(i).join("/");
      return params;
    }
    const s = segments[i];
    if (s === undefined) return undefined;
    if (p.startsWith(":")) {
      if (s === "") return undefined;
      params[p.slice(1)] = decodeURIComponent(s);
    } else if (p !== s) return undefined;
  }
  return segments.length === pattern.length ? params : undefined;
}

const ORIGIN = "https://eproxy.invalid";

/**
 * A request target whose path and query the URL parser would leave as they are: no `//` authority,
 * no dot segments (nor `%2e`), no character that it would encode, trim or cut (`#`).
 */
const PLAIN_TARGET = /^\/(?!\/)[\w\-.~!$&()*+,;=:@/%?]*$/;
const DOT_SEGMENT = /%2e|(?:^|\/)\.\.?(?:[/?]|$)/i;

/** A handler's context; the URL object is built when a handler asks for it. */
class Context implements RestContext {
  req: NodeRequest;
  res: NodeResponse;
  params: Record<string, string>;
  requestId: string;
  search: string;
  #url: URL | undefined;

  constructor(
    req: NodeRequest,
    res: NodeResponse,
    params: Record<string, string>,
    requestId: string,
    search: string,
    url: URL | undefined,
  ) {
    this.req = req;
    this.res = res;
    this.params = params;
    this.requestId = requestId;
    this.search = search;
    this.#url = url;
  }

  get url(): URL {
    this.#url ??= new URL(this.req.url ?? "/", ORIGIN);
    return this.#url;
  }
}

/** Builds the fallback handler from a list of routes. */
export function createRestRouter(
  routes: readonly Route[],
  log: Logger,
  traces: Traces = { record() {} },
): (req: NodeRequest, res: NodeResponse) => void {
  const compiled = routes.map((r) => {
    const parts = r.pattern.split("/").slice(1);
    // A literal segment beats a parameter: `/oauth2/codeflow/token` is not `/oauth2/codeflow/:clientId`.
    const literal = parts.map((p) => (p.startsWith(":") || p === "*" ? "0" : "1")).join("");
    return { ...r, parts, literal };
  });
  type Compiled = (typeof compiled)[number];

  function failed(route: Compiled, ctx: RestContext, pathname: string, err: unknown): void {
    const { req, res } = ctx;
    noteAccess({ code: err instanceof EproxyError ? err.code : "INTERNAL" });
    if (!(err instanceof EproxyError) || err.code === "INTERNAL") log.error({ err }, "REST handler failed");
    const clientId = callerIdOf(req);
    recordRefusal(
      traces,
      { ...(clientId ? { clientId } : {}), method: req.method ?? "", path: pathname },
      err,
    );
    if (route.onError) route.onError(ctx, err);
    else sendProblem(res, err, ctx.requestId);
  }

  return (req, res) => {
    const rc = requestContext.getStore();
    const requestId = rc?.requestId ?? "";
    const target = req.url ?? "/";
    let pathname: string;
    let search: string;
    let url: URL | undefined;
    if (PLAIN_TARGET.test(target) && !DOT_SEGMENT.test(target)) {
      // What `new URL` would give, without parsing.
      const q = target.indexOf("?");
      pathname = q < 0 ? target : target.slice(0, q);
      search = q < 0 || q === target.length - 1 ? "" : target.slice(q);
    } else {
      try {
        url = new URL(target, ORIGIN);
      } catch {
        sendProblem(res, new EproxyError("INVALID_ARGUMENT", "malformed request target"), requestId);
        return;
      }
      pathname = url.pathname;
      search = url.search;
    }
    const segments = pathname.split("/").slice(1);
    // The routes this path matches, keeping only the most literal pattern (and all its methods).
    let found: Array<{ route: Compiled; params: Record<string, string> }> = [];
    for (const route of compiled) {
      let params: Record<string, string> | undefined;
      try {
        params = match(route.parts, segments);
      } catch {
        sendProblem(res, new EproxyError("INVALID_ARGUMENT", "malformed path encoding"), requestId);
        return;
      }
      if (!params) continue;
      const best = found[0]?.route.literal;
      if (best === undefined || route.literal > best) found = [{ route, params }];
      else if (route.literal === best) found.push({ route, params });
    }
    const allowed: string[] = [];
    for (const { route, params } of found) {
      if (route.method !== req.method) {
        allowed.push(route.method);
        continue;
      }
      const ctx = new Context(req, res, params, requestId, search, url);
      if (rc) rc.access.route = route.pattern;
      try {
        const r = route.handler(ctx);
        if (r) r.then(undefined, (err: unknown) => failed(route, ctx, pathname, err));
      } catch (err) {
        failed(route, ctx, pathname, err);
      }
      return;
    }
    if (allowed.length > 0) {
      sendProblem(
        res,
        new EproxyError("METHOD_NOT_ALLOWED", `method ${req.method} not allowed here`),
        requestId,
        {
          allow: [...new Set(allowed)].join(", "),
        },
      );
      return;
    }
    sendProblem(res, new EproxyError("NOT_FOUND", `no route for ${pathname}`), requestId);
  };
}
