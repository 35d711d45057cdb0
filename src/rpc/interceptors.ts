/**
 * Connect interceptors. In Connect the first interceptor of the array is the outermost.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { EproxyError } from "../errors.ts";
import { toConnectError } from "./connect-errors.ts";

/**
 * Maps everything a handler throws (including in a response stream) to a ConnectError with a public
 * message only, and logs the cause of unexpected failures.
 */
export function createErrorInterceptor(log: Logger): Interceptor {
  const map = (err: unknown, procedure: string) => {
    if (!(err instanceof EproxyError) || err.code === "INTERNAL") {
      log.error({ err, procedure }, "RPC failed");
    }
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
            throw map(err, req.method.name);
          }
        })(),
      };
    } catch (err) {
      throw map(err, req.method.name);
    }
  };
}
