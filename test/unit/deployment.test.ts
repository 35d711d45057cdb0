import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

describe("deployment files", () => {
  it("docker-compose.yml runs eproxy with mongo and an optional redis on a private network", () => {
    const compose = parse(readFileSync("docker-compose.yml", "utf8"));
    expect(Object.keys(compose.services).sort()).toEqual(["eproxy", "mongo", "redis"]);
    const eproxy = compose.services.eproxy;
    expect(eproxy.build).toBe(".");
    expect(eproxy.volumes).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/:\/etc\/eproxy\/eproxy\.yaml:ro$/),
        expect.stringMatching(/:\/etc\/eproxy\/certs:ro$/),
      ]),
    );
    expect(eproxy.environment.EPROXY_MONGODB_URL).toMatch(/^mongodb:\/\/mongo:/);
    expect(compose.services.redis.profiles).toEqual(["redis"]);
    for (const s of Object.values<{ networks: string[] }>(compose.services))
      expect(s.networks).toEqual(["private"]);
    expect(compose.services.mongo.ports).toBeUndefined();
  });

  it("the Dockerfile uses Node.js 24 and runs `eproxy serve`", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8");
    expect(dockerfile).toMatch(/^FROM node:24/m);
    expect(dockerfile).toContain('"serve"');
    expect(dockerfile).toMatch(/^USER node$/m);
  });
});
