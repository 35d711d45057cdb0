/**
 * Malformed requests are the caller's fault, on every protocol: a protobuf message that does not
 * parse is `invalid_argument` (connect-es reports it as `internal`, before any interceptor runs),
 * and an enum value the contract does not define is refused (proto3 enums are open: gRPC and Connect
 * binary would carry `42` through, and Connect JSON with unknown fields ignored turns an unknown
 * name into the zero value).
 */
import type { DescMessage, Message } from "@bufbuild/protobuf";
import { reflect } from "@bufbuild/protobuf/reflect";
import { Code, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { EproxyError } from "../errors.ts";

/** How Connect's binary serialization words a message that does not parse. */
export const PARSE_FAILURE = /^parse binary: /;
/** What the caller is told instead. */
export const PUBLIC_MESSAGE = "malformed request message";

/** The first enum value of `message` (nested messages included) that its enum does not define. */
export function undefinedEnumValue(desc: DescMessage, message: Message): string | undefined {
  const r = reflect(desc, message);
  for (const f of r.fields) {
    if (!r.isSet(f)) continue;
    if (f.fieldKind === "enum") {
      const v = r.get(f) as number;
      if (!f.enum.values.some((e) => e.number === v)) return `${f.name}=${v}`;
    } else if (f.fieldKind === "list" && f.listKind === "enum") {
      for (const v of r.get(f) as Iterable<number>)
        if (!f.enum.values.some((e) => e.number === v)) return `${f.name}=${v}`;
    } else if (f.fieldKind === "message") {
      const inner = r.get(f) as { message: Message; desc: DescMessage };
      const bad = undefinedEnumValue(f.message, inner.message);
      if (bad) return `${f.name}.${bad}`;
    }
  }
  return undefined;
}

/** Refuses requests carrying an enum value the contract does not define (outermost is fine). */
export function createEnumGuard(): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const bad = undefinedEnumValue(req.method.input, req.message as Message);
      if (bad) throw new EproxyError("INVALID_ARGUMENT", `undefined enum value (${bad.replace(/=.*/, "")})`);
    }
    return next(req);
  };
}

async function rewriteConnectError(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  if (res.status !== 500 || !res.body || !res.header?.get("content-type")?.startsWith("application/json")) {
    return res;
  }
  const chunks: Uint8Array[] = [];
  for await (const c of res.body) chunks.push(c);
  const bytes = Buffer.concat(chunks);
  let body: Uint8Array = bytes;
  let status = res.status;
  try {
    const json = JSON.parse(bytes.toString("utf8")) as { code?: string; message?: string };
    if (json.code === "internal" && PARSE_FAILURE.test(json.message ?? "")) {
      status = 400;
      body = Buffer.from(JSON.stringify({ code: "invalid_argument", message: PUBLIC_MESSAGE }));
      res.header?.set("content-length", String(body.length));
    }
  } catch {
    // not a Connect error document: left as it is
  }
  return {
    ...res,
    status,
    body: (async function* () {
      yield body;
    })(),
  };
}

function rewriteGrpcTrailer(trailer: Headers | undefined): void {
  const message = decodeURIComponent(trailer?.get("grpc-message") ?? "");
  if (trailer?.get("grpc-status") === String(Code.Internal) && PARSE_FAILURE.test(message)) {
    trailer.set("grpc-status", String(Code.InvalidArgument));
    trailer.set("grpc-message", encodeURIComponent(PUBLIC_MESSAGE));
  }
}

/** Wraps a handler so that a request that does not parse is answered `invalid_argument`. */
function parseFailuresAsInvalid(h: UniversalHandler): UniversalHandler {
  const wrapped = async (req: Parameters<UniversalHandler>[0]) => {
    const res = await h(req);
    const ct = res.header?.get("content-type") ?? "";
    if (ct.startsWith("application/grpc") && !ct.startsWith("application/grpc-web")) {
      rewriteGrpcTrailer(res.trailer);
      const body = res.body;
      if (!body) return res;
      return {
        ...res,
        // The trailer is filled while the body is produced; it is written after the body ends.
        body: (async function* () {
          yield* body;
          rewriteGrpcTrailer(res.trailer);
        })(),
      };
    }
    if (ct.startsWith("application/json")) return rewriteConnectError(res);
    return res;
  };
  return Object.assign(wrapped, h) as UniversalHandler;
}

/** Applies `parseFailuresAsInvalid` to every handler registered on `router` so far. */
export function answerParseFailuresAsInvalid(router: ConnectRouter): void {
  for (let i = 0; i < router.handlers.length; i++) {
    router.handlers[i] = parseFailuresAsInvalid(router.handlers[i] as UniversalHandler);
  }
}
