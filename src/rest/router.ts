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
  url: URL;
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
  return (req, res) => {
    const requestId = requestContext.getStore()?.requestId ?? "";
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "https://eproxy.invalid");
    } catch {
      sendProblem(res, new EproxyError("INVALID_ARGUMENT", "malformed request target"), requestId);
      return;
    }
    const segments = url.pathname.split("/").slice(1);
    // The routes this path matches, keeping only the most literal pattern (and all its methods).
    let found: Array<{ route: (typeof compiled)[number]; params: Record<string, string> }> = [];
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
      const ctx: RestContext = { req, res, url, params, requestId };
      noteAccess({ route: route.pattern });
      const fail = (err: unknown) => {
        noteAccess({ code: err instanceof EproxyError ? err.code : "INTERNAL" });
        if (!(err instanceof EproxyError) || err.code === "INTERNAL")
          log.error({ err }, "REST handler failed");
        const clientId = callerIdOf(req);
        recordRefusal(
          traces,
          { ...(clientId ? { clientId } : {}), method: req.method ?? "", path: url.pathname },
          err,
        );
        if (route.onError) route.onError(ctx, err);
        else sendProblem(res, err, requestId);
      };
      try {
        Promise.resolve(route.handler(ctx)).catch(fail);
      } catch (err) {
        fail(err);
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
    sendProblem(res, new EproxyError("NOT_FOUND", `no route for ${url.pathname}`), requestId);
  };
}
