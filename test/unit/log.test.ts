import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, requestContext } from "../../src/log.ts";

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { lines, log: createLogger("info", stream) };
}

describe("logger", () => {
  it("redacts credentials at any usual depth", () => {
    const { lines, log } = capture();
    log.info({
      headers: {
        authorization: "Bearer secret-1",
        cookie: "proxy_session_id=secret-2",
        "x-eproxy-session": "secret-3",
      },
      sessionToken: "secret-4",
      session: { accessToken: "secret-5", tokens: { refresh_token: "secret-6" } },
      apiKey: "secret-7",
      nationalId: "899700218896",
    });
    const out = lines.join("");
    for (let i = 1; i <= 7; i++) expect(out).not.toContain(`secret-${i}`);
    expect(out).toContain("[redacted]");
  });

  it("puts the request id on every line logged during a request", () => {
    const { lines, log } = capture();
    requestContext.run({ requestId: "req-42" }, () => {
      log.info("one");
      log.warn({ a: 1 }, "two");
    });
    log.info("outside");
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed[0].requestId).toBe("req-42");
    expect(parsed[1].requestId).toBe("req-42");
    expect(parsed[2].requestId).toBeUndefined();
  });
});
