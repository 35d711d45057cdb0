/**
 * Connect interceptors. In Connect the first interceptor of the array is the outermost.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { EproxyError } from "../errors.ts";
import { noteAccess } from "../log.ts";
import { recordRefusal } from "../trace/refusals.ts";
import type { Traces } from "../trace/traces.ts";
import { kCallerId } from "./caller.ts";
import { toConnectError } from "./connect-errors.ts";

/** Connect's wire names of the codes (`invalid_argument`), as in the Connect protocol's error JSON. */
const CODE_NAMES: Record<number, string> = { 0: "ok" };
for (const [name, n] of Object.entries(Code)) {
  if (typeof n === "number")
    CODE_NAMES[n] = name.replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase());
}

/**
 * Maps everything a handler throws (including in a response stream) to a ConnectError with a public
 * message only, and logs the cause of unexpected failures.
 */
export function createErrorInterceptor(log: Logger, traces: Traces = { record() {} }): Interceptor {
  const map = (err: unknown, procedure: string, clientId: string, signal?: AbortSignal) => {
    // The caller cancelled (hung up): nobody was refused and nothing failed. The operation traced
    // it (a relayed call's SEND says ABORTED); an info line without a stack is all that is left.
    if (signal?.aborted) {
      log.info({ procedure }, "RPC cancelled by the caller");
      return new ConnectError("cancelled by the caller", Code.Canceled);
    }
    if (!(err instanceof EproxyError) || err.code === "INTERNAL") {
      log.error({ err, procedure }, "RPC failed");
    }
    recordRefusal(traces, { ...(clientId ? { clientId } : {}), method: "RPC", path: procedure }, err);
    return toConnectError(err);
  };
  // The access line's procedure, client id and Connect/gRPC code (the server writes the line).
  const note = (req: Parameters<Parameters<Interceptor>[0]>[0], code: Code) => {
    const clientId = req.contextValues.get(kCallerId);
    noteAccess({
      route: `/${req.service.typeName}/${req.method.name}`,
      code: CODE_NAMES[code] ?? String(code),
      ...(clientId ? { clientId } : {}),
    });
  };
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) {
        note(req, 0 as Code);
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
            note(req, 0 as Code);
          } catch (err) {
            const ce = map(err, req.method.name, req.contextValues.get(kCallerId), req.signal);
            note(req, ce.code);
            throw ce;
          }
        })(),
      };
    } catch (err) {
      const ce = map(err, req.method.name, req.contextValues.get(kCallerId), req.signal);
      note(req, ce.code);
      throw ce;
    }
  };
}
