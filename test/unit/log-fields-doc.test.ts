/**
 * docs/reference/log-fields.md lists exactly the fields of the access line: one line is written with
 * every field the request's layers can note, by both writers (the hot path's by construction, and
 * pino's for a logger without that shape), and its keys are compared with the documented table.
 */
import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { type AccessFields, createLogger, writeAccessLine } from "../../src/log.ts";

/** Every field a layer may note, set (a new AccessFields key fails to compile here until listed). */
const ALL_FIELDS: Required<AccessFields> = {
  clientId: "lps-demo",
  route: "/send/:service/*",
  code: "OK",
  teleservice: "insi",
  soapAction: "urn:action",
  upstreamStatus: 200,
  correlationId: "c-1",
  bytesIn: 10,
  bytesOut: 20,
};

/** pino's own keys on every line, and the base bindings: not the access line's fields. */
const PINO_KEYS = new Set(["level", "time", "msg", "service", "pid", "hostname"]);

function accessLineKeys(): string[] {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  writeAccessLine(
    createLogger("info", stream),
    { requestId: "r-1", access: { ...ALL_FIELDS } },
    {
      method: "POST",
      url: "/send/insi",
      httpVersion: "1.1",
      contentType: "application/soap+xml",
      contentLength: "10",
    },
    200,
    true,
    1.5,
    20,
  );
  return Object.keys(JSON.parse(lines[0] as string)).filter((k) => !PINO_KEYS.has(k));
}

/** Field names in the first column of the access-line table of the log-fields reference. */
function documentedFields(): string[] {
  const page = readFileSync("docs/reference/log-fields.md", "utf8");
  const section = page.slice(page.indexOf("## The access line"));
  return [...section.matchAll(/^\| ([^|]+) \|/gm)]
    .flatMap((m) => [...(m[1] as string).matchAll(/`(\w+)`/g)].map((n) => n[1] as string))
    .filter((f) => f !== "field");
}

describe("the access line's documented fields", () => {
  it("the reference lists every field the line carries, and no other (worker: child bindings)", () => {
    const written = accessLineKeys();
    expect(written.length).toBeGreaterThan(10);
    expect(
      documentedFields()
        .filter((f) => f !== "worker")
        .sort(),
    ).toEqual(written.sort());
  });
});
