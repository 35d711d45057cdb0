/**
 * The buffered log destination (`log.bufferBytes`): lines reach standard output while the process
 * runs (within the flush period, without more lines to fill the buffer) and at exit, including an
 * exit by `process.exit` right after logging. Real child processes writing to a real pipe.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";

const LOG = path.resolve("src/log.ts");

function child(script: string): {
  lines: () => string[];
  err: () => string;
  exited: Promise<number | null>;
  kill: () => void;
} {
  const p = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  p.stderr.on("data", (c: Buffer) => {
    err += c.toString();
  });
  p.stdout.on("data", (c: Buffer) => {
    out += c.toString();
  });
  return {
    lines: () => out.split("\n").filter(Boolean),
    err: () => err,
    exited: new Promise((r) => p.on("close", (code) => r(code))),
    kill: () => p.kill("SIGKILL"),
  };
}

describe("buffered log destination", () => {
  it("writes a lone line within the flush period, before the buffer is full", async () => {
    const c = child(`
      import { createLogDestination, createLogger } from ${JSON.stringify(LOG)};
      const log = createLogger("info", createLogDestination({ bufferBytes: 4096, flushMs: 100 }));
      log.info({ n: 1 }, "lone line");
      setTimeout(() => {}, 60_000);
    `);
    try {
      const until = Date.now() + 20_000;
      while (c.lines().length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(c.lines().map((l) => JSON.parse(l).msg)).toEqual(["lone line"]);
    } finally {
      c.kill();
    }
  });

  it("loses no line when the process exits right after logging", async () => {
    const c = child(`
      import { createLogDestination, createLogger } from ${JSON.stringify(LOG)};
      const log = createLogger("info", createLogDestination({ bufferBytes: 8192, flushMs: 60_000 }));
      for (let n = 0; n < 500; n++) log.info({ n }, "line");
      process.exit(3);
    `);
    expect(await c.exited).toBe(3);
    // Every line, once. On a busy machine the chunk whose write was still on libuv's pool at the
    // sudden exit lands after the rest (the pool finishes it at shutdown): order is for planned exits.
    const ns = c.lines().map((l) => JSON.parse(l).n as number);
    expect([...ns].sort((a, b) => a - b)).toEqual(Array.from({ length: 500 }, (_, n) => n));
  });

  it("keeps the order on a planned exit (flushLogs, as eproxy serve does on SIGTERM)", async () => {
    const c = child(`
      import { createLogDestination, createLogger, flushLogs } from ${JSON.stringify(LOG)};
      const dest = createLogDestination({ bufferBytes: 8192, flushMs: 60_000 });
      const log = createLogger("info", dest);
      for (let n = 0; n < 500; n++) log.info({ n }, "line");
      await flushLogs(dest);
      process.exit(3);
    `);
    expect(await c.exited).toBe(3);
    expect(c.lines().map((l) => JSON.parse(l).n)).toEqual(Array.from({ length: 500 }, (_, n) => n));
  });

  it("gathers lines: fewer writes than lines", async () => {
    // 60 lines, 5 ms apart (a quiet server): the default destination writes each one on its own.
    // Counted in the child: sonic-boom's asynchronous writes (the exit flush is synchronous).
    const c = child(`
      import fs from "node:fs";
      import { createLogDestination, createLogger } from ${JSON.stringify(LOG)};
      let writes = 0;
      const write = fs.write;
      fs.write = function (...args) { writes++; return write.apply(this, args); };
      const log = createLogger("info", createLogDestination({ bufferBytes: 8192, flushMs: 10_000 }));
      let n = 0;
      const t = setInterval(() => {
        log.info({ n }, "line");
        if (++n === 60) { clearInterval(t); process.stderr.write("writes " + writes + "\\n"); process.exit(0); }
      }, 5);
    `);
    expect(await c.exited).toBe(0);
    expect(c.lines()).toHaveLength(60);
    const writes = Number(/writes (\d+)/.exec(c.err())?.[1]);
    expect(writes).toBeLessThan(10);
  });
});
