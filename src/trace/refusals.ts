/**
 * The trace of a request answered with an error, built here and nowhere else, whatever the
 * transport: `REJECTED` when the caller was refused (credentials, input, session, rights: the
 * error codes whose fault side is the sender), `FAILED` when eProxy or a dependency could not serve
 * it (PSC, a store, a teleservice, an internal error). Operations that meet a dependency's failure
 * record their own event as well (CONNECT_FAILURE, REFRESH_FAILURE, EXCHANGE, SEND).
 */
import { ERROR_CODES, toEproxyError } from "../errors.ts";
import type { Traces } from "./traces.ts";

/** Where the refused request was going. */
export interface RequestRef {
  /** The client the request authenticated as, when it got that far. */
  clientId?: string;
  /** HTTP method, or `RPC`. */
  method: string;
  /** URL path, or the RPC's procedure name. */
  path: string;
}

/** Records the one trace of a request that ended in `err`. */
export function recordRefusal(traces: Traces, ref: RequestRef, err: unknown): void {
  const { code } = toEproxyError(err);
  traces.record({
    type: ERROR_CODES[code].side === "Sender" ? "REJECTED" : "FAILED",
    ...(ref.clientId ? { clientId: ref.clientId } : {}),
    method: ref.method,
    path: ref.path.slice(0, 200),
    outcome: code,
  });
}
