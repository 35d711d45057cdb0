/**
 * The trace part of the agency's conformity test: over the test's time window, `GET /traces` must
 * show the session's login, its relayed call (SEND) and its logout, each with PSC's
 * `session_state`, the client id and the client certificate's DN, and the SEND with its request
 * path. Pure: the traces are read elsewhere.
 */

/** A trace as `GET /traces` answers it (the fields this check reads). */
export interface TraceJson {
  type?: string;
  timestamp?: string;
  clientId?: string;
  sessionHash?: string;
  sessionState?: string;
  certificateDn?: string;
  service?: string;
  path?: string;
  outcome?: string;
}

/** What the session of the test was, as the proxy gave it to the user software. */
export interface ExpectedSession {
  clientId: string;
  /** `proxy_session_id`: the `sessionHash` of the session's traces. */
  proxySessionId: string;
  /** PSC's `session_state`. */
  sessionState: string;
  /** Teleservice name of the relayed call. */
  service: string;
  /** Path of the relayed call after the teleservice name, with its leading slash. */
  path: string;
}

/** The verdict on one expected trace. */
export interface TraceVerdict {
  /** `login`, `send` or `logout`. */
  trace: "login" | "send" | "logout";
  /** The trace types that may stand for it. */
  types: readonly string[];
  ok: boolean;
  /** What was found, or what is missing (names the trace and the field). */
  detail: string;
}

const LOGIN_TYPES = ["CONNECT_SUCCESS"] as const;
const SEND_TYPES = ["SEND"] as const;
const LOGOUT_TYPES = ["DISCONNECT"] as const;

/** Fields every trace of the session must carry, with the value expected (undefined: any non-empty). */
function requiredFields(e: ExpectedSession): Array<[keyof TraceJson, string | undefined]> {
  return [
    ["clientId", e.clientId],
    ["sessionState", e.sessionState],
    ["certificateDn", undefined],
  ];
}

function verdictFor(
  trace: TraceVerdict["trace"],
  types: readonly string[],
  all: readonly TraceJson[],
  expected: ExpectedSession,
  extra: Array<[keyof TraceJson, string | undefined]> = [],
): TraceVerdict {
  const label = `${trace} trace (${types.join(" or ")})`;
  const candidates = all.filter(
    (t) => types.includes(t.type ?? "") && t.sessionHash === expected.proxySessionId,
  );
  if (candidates.length === 0) {
    return {
      trace,
      types,
      ok: false,
      detail: `${label} missing: no ${types.join("/")} trace of session ${expected.proxySessionId} in the window`,
    };
  }
  const fields = [...requiredFields(expected), ...extra];
  const problemsOf = (t: TraceJson): string[] =>
    fields.flatMap(([field, want]) => {
      const got = t[field];
      if (got === undefined || got === "") return [`${field} missing`];
      if (want !== undefined && got !== want)
        return [`${field} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`];
      return [];
    });
  const good = candidates.find((t) => problemsOf(t).length === 0);
  if (good) {
    return {
      trace,
      types,
      ok: true,
      detail: `${good.type} at ${good.timestamp ?? "?"}: ${fields.map(([f]) => f).join(", ")} present`,
    };
  }
  return {
    trace,
    types,
    ok: false,
    detail: `${label} incomplete: ${problemsOf(candidates[0] as TraceJson).join("; ")}`,
  };
}

/** Checks the traces of the window against the session of the test: one verdict per expected trace. */
export function checkTraces(all: readonly TraceJson[], expected: ExpectedSession): TraceVerdict[] {
  return [
    verdictFor("login", LOGIN_TYPES, all, expected),
    verdictFor("send", SEND_TYPES, all, expected, [
      ["service", expected.service],
      ["path", expected.path],
    ]),
    verdictFor("logout", LOGOUT_TYPES, all, expected),
  ];
}
