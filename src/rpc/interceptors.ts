/**
 * Connect interceptors. In Connect the first interceptor of the array is the outermost.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { EproxyError } from "../errors.ts";
import { recordRefusal } from "../trace/refusals.ts";
import type { Traces } from "../trace/traces.ts";
import { kCallerId } from "./caller.ts";
import { toConnectError } from "./connect-errors.ts";

/**
 * Maps everything a handler throws (including in a response stream) to a ConnectError with a public
 * message only, and logs the cause of unexpected failures.
 */
export function createErrorInterceptor(log: Logger, traces: Traces = { record() {} }): Interceptor {
  const map = (err: unknown, procedure: string, clientId: string) => {
    if (!(err instanceof EproxyError) || err.code === "INTERNAL") {
      log.error({ err, procedure }, "RPC failed");
    }
    recordRefusal(traces, { ...(clientId ? { clientId } : {}), method: "RPC", path: procedure }, err);
    return toConnectError(err);
  };
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (err) {
            throw map(err, req.method.name, req.contextValues.get(kCallerId));
          }
        })(),
      };
    } catch (err) {
      throw map(err, req.method.name, req.contextValues.get(kCallerId));
    }
  };
}
