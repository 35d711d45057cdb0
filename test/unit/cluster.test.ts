import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { workerConfig, workersFor } from "../../src/cluster.ts";
import { type Config, parseConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";

const base = {
  server: { tls: { certFile: "s.pem", keyFile: "k.pem" } },
  psc: { discoveryUrl: "https://psc.example/.well-known/openid-configuration" },
};
const redis = {
  sessions: { kind: "redis", url: "redis://127.0.0.1:6379" },
  encryption: { keys: [{ id: "k1", env: "EPROXY_KEY" }], activeKeyId: "k1" },
};

function capture() {
  const lines: string[] = [];
  const log = createLogger(
    "info",
    new Writable({
      write(c, _e, cb) {
        lines.push(c.toString());
        cb();
      },
    }),
  );
  return { lines, log };
}

const cfg = (server: object, stores?: object): Config =>
  parseConfig(
    { ...base, server: { ...base.server, ...server }, ...(stores ? { stores } : {}) },
    {},
    "/etc/eproxy",
  );

describe("server.workers", () => {
  it("runs one process with the memory store, and says so when more were asked for", () => {
    const quiet = capture();
    expect(workersFor(cfg({}), quiet.log)).toBe(1);
    expect(quiet.lines).toHaveLength(0);
    const loud = capture();
    expect(workersFor(cfg({ workers: 4 }), loud.log)).toBe(1);
    expect(loud.lines.join("")).toContain("needs a shared session store");
  });

  it("uses the configured count, or one per CPU, with a shared store", () => {
    const { log } = capture();
    expect(workersFor(cfg({ workers: 3 }, redis), log)).toBe(3);
    expect(workersFor(cfg({ workers: 1 }, redis), log)).toBe(1);
    expect(workersFor(cfg({}, redis), log)).toBeGreaterThanOrEqual(1);
  });

  it("gives each worker its own trace spool", () => {
    const c = cfg({}, redis);
    expect(workerConfig(c, 2).traces.spoolFile).toBe(`${c.traces.spoolFile}.worker-2`);
    expect(workerConfig(c, 2).server).toBe(c.server);
  });
});
