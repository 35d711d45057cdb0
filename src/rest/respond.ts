/**
 * Writing and reading bodies of the REST facade (JSON answers, JSON request bodies) on the Node
 * request and response the Connect adapter hands to its fallback, HTTP/1.1 or HTTP/2 alike.
 */
import type { ServerResponse } from "node:http";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { EproxyError } from "../errors.ts";

/** A request as the node adapter hands it to the fallback (HTTP/1.1 or HTTP/2). */
export type NodeRequest = Parameters<NonNullable<ConnectNodeAdapterOptions["fallback"]>>[0];
/** The matching response. */
export type NodeResponse = Parameters<NonNullable<ConnectNodeAdapterOptions["fallback"]>>[1];

/** `writeHead` on either response flavour (their overloads differ only in typing). */
export function writeHead(
  res: NodeResponse,
  status: number,
  headers: Record<string, string | number | string[]>,
): void {
  (res as unknown as ServerResponse).writeHead(status, headers);
}

/** Writes a JSON answer. */
export function sendJson(
  res: NodeResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  writeHead(res, status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

/**
 * Reads a JSON request body, refusing more than `maxBytes` (413) and anything that is not a JSON
 * object (400).
 */
export async function readJsonObject(req: NodeRequest, maxBytes: number): Promise<Record<string, unknown>> {
  const ct = String(req.headers["content-type"] ?? "");
  if (!/^application\/([\w.+-]*\+)?json\b/i.test(ct)) {
    throw new EproxyError("INVALID_ARGUMENT", "expected Content-Type: application/json");
  }
  const declared = Number(req.headers["content-length"] ?? Number.NaN);
  if (declared > maxBytes) throw new EproxyError("PAYLOAD_TOO_LARGE", `body larger than ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new EproxyError("PAYLOAD_TOO_LARGE", `body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new EproxyError("INVALID_ARGUMENT", "body is not valid JSON");
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new EproxyError("INVALID_ARGUMENT", "body must be a JSON object");
  }
  return value as Record<string, unknown>;
}
