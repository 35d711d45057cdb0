/**
 * The deployment kit's rules, checked on the files as shipped (no container engine is reachable here;
 * .ci/deploy-checks.sh runs the linters, compose config, helm lint and kubeconform).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { dockerignorePatterns, inBuildContext } from "../../.ci/docker-context.ts";
import { parseConfig } from "../../src/config.ts";

const read = (f: string) => readFileSync(f, "utf8");

/** The Dockerfile as instructions (continuation lines joined, comments dropped), split into stages. */
function dockerfileStages(): { from: string; alias?: string; lines: string[] }[] {
  const joined = read("Dockerfile")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const stages: { from: string; alias?: string; lines: string[] }[] = [];
  for (const line of joined) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ from: from[1] as string, ...(from[2] ? { alias: from[2] } : {}), lines: [] });
    else stages.at(-1)?.lines.push(line);
  }
  return stages;
}

describe("Dockerfile", () => {
  const stages = dockerfileStages();
  const final = stages.at(-1) as (typeof stages)[number];
  const external = stages.filter((s) => !stages.some((o) => o.alias === s.from));

  it("builds on Node.js 24 pinned by digest", () => {
    expect(external.length).toBeGreaterThan(0);
    for (const s of external) {
      expect(s.from).toMatch(/^node:24(\.\d+){0,2}-[\w.-]+@sha256:[0-9a-f]{64}$/);
    }
  });

  it("installs production dependencies only, with the lockfile, and ships no sandbox or key", () => {
    const all = stages.flatMap((s) => s.lines);
    const installs = all.filter((l) => /\bnpm (ci|install|i)\b/.test(l));
    expect(installs.length).toBeGreaterThan(0);
    for (const l of installs) {
      expect(l).toMatch(/\bnpm ci\b/);
      expect(l).toContain("--omit=dev");
    }
    const copies = final.lines.filter((l) => /^(COPY|ADD)\s/i.test(l));
    for (const c of copies) {
      expect(c, c).not.toMatch(/^ADD/i);
      // No whole-context copy, no certificates, no sandbox.
      expect(c, c).not.toMatch(/\s\.\s|certs|sandbox|dev-pki|\.pem|test/);
    }
  });

  it("runs as a non-root user with a writable state directory for the trace spool", () => {
    const user = final.lines.filter((l) => /^USER\s/i.test(l)).at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^USER\s+(root|0)(:|$)/i);
    const env = final.lines.filter((l) => /^ENV\s/i.test(l)).join(" ");
    expect(env).toMatch(/NODE_ENV=production/);
    expect(env).toMatch(/EPROXY_STATE_DIR=\/var\/lib\/eproxy/);
    const run = final.lines.filter((l) => /^RUN\s/i.test(l)).join(" ");
    expect(run).toMatch(/mkdir -p \/var\/lib\/eproxy/);
    expect(run).toMatch(/chown node:node \/var\/lib\/eproxy/);
    // The instruction order matters: USER comes after the last RUN that needs root.
    const idx = (re: RegExp) => final.lines.findLastIndex((l) => re.test(l));
    expect(idx(/^USER\s/i)).toBeGreaterThan(idx(/^RUN\s/i));
  });

  it("starts `eproxy serve` and checks /healthz on the port it exposes", () => {
    const entry = final.lines.find((l) => /^ENTRYPOINT/i.test(l)) as string;
    const cmd = final.lines.find((l) => /^CMD/i.test(l)) as string;
    expect(JSON.parse(entry.replace(/^ENTRYPOINT\s+/i, ""))).toEqual(["node", "bin/eproxy.js"]);
    expect(JSON.parse(cmd.replace(/^CMD\s+/i, ""))).toEqual(["serve", "--config", "/etc/eproxy/eproxy.yaml"]);
    const port = /^EXPOSE\s+(\d+)/im.exec(final.lines.join("\n"))?.[1];
    expect(port).toBe("8443");
    const health = final.lines.find((l) => /^HEALTHCHECK/i.test(l)) as string;
    expect(health).toContain(`port:${port}`);
    expect(health).toContain("/healthz");
  });

  it(".dockerignore sends the sources and the lockfile, never node_modules, keys, state or tests", () => {
    const patterns = dockerignorePatterns(read(".dockerignore"));
    const tracked = execFileSync("git", ["ls-files"], { encoding: "utf8" }).split("\n").filter(Boolean);
    for (const f of ["package.json", "package-lock.json", "bin/eproxy.js", "src/cli.ts", "src/server.ts"]) {
      expect(inBuildContext(f, patterns), f).toBe(true);
    }
    expect(tracked.filter((f) => f.startsWith("gen/") && inBuildContext(f, patterns)).length).toBeGreaterThan(
      0,
    );
    for (const f of [
      "node_modules/undici/package.json",
      "certs/ca-key.pem",
      "certs/clients/lps-demo-key.pem",
      "deploy/secrets/server-key.pem",
      ".eproxy/traces.spool",
      ".git/config",
      "src/sandbox/psc-simulator.ts",
      "src/infra/dev-pki.ts",
      "test/unit/deployment.test.ts",
      "docker-compose.yml",
    ]) {
      expect(inBuildContext(f, patterns), f).toBe(false);
    }
    // Whatever the Dockerfile copies from the context is in it.
    for (const l of final.lines.filter((x) => /^COPY\s/i.test(x) && !x.includes("--from"))) {
      const srcs = l
        .replace(/^COPY\s+/i, "")
        .split(/\s+/)
        .filter((w) => !w.startsWith("--"))
        .slice(0, -1);
      for (const s of srcs) expect(inBuildContext(s.replace(/\/$/, ""), patterns), s).toBe(true);
    }
  });

  it("production code imports only production dependencies (the image has no others)", () => {
    const pkg = JSON.parse(read("package.json")) as { dependencies: Record<string, string> };
    const production = new Set(Object.keys(pkg.dependencies));
    for (const dev of ["oidc-provider", "reflect-metadata", "@peculiar/x509"]) {
      expect(production.has(dev), dev).toBe(false);
    }
    const builtins = new Set(builtinModules);
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir)) {
        const p = path.join(dir, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith(".ts")) files.push(p);
      }
    };
    walk("src");
    const shipped = files.filter((f) => !f.startsWith("src/sandbox/") && f !== "src/infra/dev-pki.ts");
    expect(shipped.length).toBeGreaterThan(20);
    const missing: string[] = [];
    for (const f of shipped) {
      // Nor the code the image leaves out (.dockerignore): the sandbox and the development PKI.
      for (const m of read(f).matchAll(/^(?:import|export)\s(?:[^;]*?from\s+)?"(\.[^"]*)"/gm)) {
        const target = path.join(path.dirname(f), m[1] as string);
        if (target.startsWith("src/sandbox/") || target === "src/infra/dev-pki.ts")
          missing.push(`${f}: ${m[1]}`);
      }
      // Static imports only: the development commands import their modules dynamically, on purpose.
      for (const m of read(f).matchAll(/^(?:import|export)\s(?:[^;]*?from\s+)?"([^".][^"]*)"/gm)) {
        const spec = m[1] as string;
        if (spec.startsWith("node:") || builtins.has(spec)) continue;
        const name = spec.startsWith("@")
          ? spec.split("/").slice(0, 2).join("/")
          : (spec.split("/")[0] as string);
        if (!production.has(name)) missing.push(`${f}: ${spec}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe("docker-compose.yml", () => {
  const compose = parse(read("docker-compose.yml"));
  const services = compose.services as Record<string, Record<string, unknown>>;
  const eproxy = services.eproxy as {
    environment: Record<string, string>;
    volumes: string[];
    secrets: string[];
    networks: Record<string, { ipv4_address?: string }>;
    depends_on: Record<string, { condition: string }>;
  };
  const makeSecrets = read("deploy/compose/make-secrets.sh");

  it("mounts files that exist in the repository", () => {
    for (const [name, s] of Object.entries(services)) {
      for (const v of (s.volumes as string[] | undefined) ?? []) {
        const host = v.split(":")[0] as string;
        if (host.startsWith(".")) expect(existsSync(host), `${name}: ${v}`).toBe(true);
      }
    }
  });

  it("deploy/eproxy.yaml is a valid configuration once compose's environment applies", () => {
    // The *_FILE variables name secrets; their content here is what make-secrets.sh writes.
    const env: Record<string, string> = {
      ...eproxy.environment,
      EPROXY_REDIS_URL: "redis://:pw@redis:6379/0",
      EPROXY_MONGODB_URL: "mongodb://eproxy:pw@mongo:27017/eproxy?authSource=eproxy",
    };
    const config = parseConfig(parse(read("deploy/eproxy.yaml")), env, "/etc/eproxy");
    expect(config.stores.sessions.kind).toBe("redis");
    expect(config.stores.encryption?.keys.length).toBeGreaterThan(0);
    expect(config.stores.mongodbUrl).toMatch(/^mongodb:\/\/eproxy:/);
    expect(config.traces.spoolFile.startsWith("/var/lib/eproxy/")).toBe(true);
    // The state directory is a volume, not the read-only root file system.
    expect(eproxy.volumes).toContain("eproxy-state:/var/lib/eproxy");
    expect(compose.services.eproxy.read_only).toBe(true);
  });

  it("gives eproxy every secret its configuration and environment name, each written by make-secrets.sh", () => {
    const named = new Set<string>();
    const text = `${read("deploy/eproxy.yaml")}\n${Object.values(eproxy.environment).join("\n")}`;
    for (const m of text.matchAll(/\/run\/secrets\/([\w-]+)/g)) named.add(m[1] as string);
    expect(named.size).toBeGreaterThan(5);
    for (const s of named) expect(eproxy.secrets, s).toContain(s);
    for (const [name, def] of Object.entries(compose.secrets as Record<string, { file: string }>)) {
      const file = path.basename(def.file);
      expect(def.file, name).toMatch(/^\.\/deploy\/secrets\//);
      expect(makeSecrets, `${name}: ${file}`).toMatch(new RegExp(`(put ${file} |\\$dir/${file}"$)`, "m"));
    }
    expect(read(".gitignore")).toMatch(/^deploy\/secrets\/$/m);
  });

  it("MongoDB and Redis require credentials from secrets", () => {
    const mongo = services.mongo as { environment: Record<string, string>; volumes: string[] };
    expect(mongo.environment.MONGO_INITDB_ROOT_PASSWORD_FILE).toMatch(/^\/run\/secrets\//);
    const init = mongo.volumes.find((v) => v.includes("/docker-entrypoint-initdb.d/")) as string;
    expect(read(init.split(":")[0] as string)).toMatch(/createUser\(\{\s*user: "eproxy"/);
    expect(makeSecrets).toContain("mongodb://eproxy:");
    const redis = services.redis as { entrypoint: string[]; secrets: string[] };
    expect(redis.entrypoint.join(" ")).toContain('--requirepass "$$(cat /run/secrets/redis_password)"');
    expect(makeSecrets).toMatch(/redis:\/\/:\$\(cat "\$dir\/redis-password"\)@redis:6379/);
  });

  it("keeps the stores on an internal network, with healthchecks gating the start", () => {
    expect(compose.networks.backend.internal).toBe(true);
    for (const name of ["redis", "mongo"]) {
      const s = services[name] as { networks: string[]; ports?: unknown };
      expect(s.networks, name).toEqual(["backend"]);
      expect(s.ports, name).toBeUndefined();
    }
    expect(Object.keys(eproxy.networks)).toEqual(expect.arrayContaining(["backend", "edge"]));
    expect(compose.networks.edge?.internal).toBeFalsy();
    // The in-network listener: on the internal `modules` network only, at the address it binds, unpublished.
    expect(compose.networks.modules.internal).toBe(true);
    expect(eproxy.networks.modules?.ipv4_address).toBe(eproxy.environment.EPROXY_INTERNAL_LISTEN_ADDRESS);
    expect((services.eproxy as { ports: string[] }).ports).toEqual(["8443:8443"]);
    for (const [name, s] of Object.entries(services)) {
      expect((s.healthcheck as { test: unknown } | undefined)?.test, name).toBeDefined();
    }
    expect(eproxy.depends_on).toEqual({
      redis: { condition: "service_healthy" },
      mongo: { condition: "service_healthy" },
    });
  });
});

describe("Helm chart", () => {
  const chart = "deploy/helm/eproxy";
  const values = parse(read(`${chart}/values.yaml`));

  it("its default configuration is a valid eProxy configuration, with files under the mounted Secret", () => {
    const config = parseConfig(values.config, values.env, "/etc/eproxy");
    expect(config.server.tls.certFile).toBe("/etc/eproxy/secrets/tls.crt");
    expect(config.stores.encryption?.keys[0]?.file).toBe("/etc/eproxy/secrets/encryption-k1");
    expect(config.traces.spoolFile).toBe("/var/lib/eproxy/traces.spool");
    const deployment = read(`${chart}/templates/deployment.yaml`);
    expect(deployment).toContain("mountPath: /etc/eproxy/secrets");
    expect(deployment).toContain("mountPath: /var/lib/eproxy");
    expect(deployment).toContain("readOnlyRootFilesystem: true");
  });

  it("has every object the operators expect", () => {
    const kinds = readdirSync(`${chart}/templates`)
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => /^kind:\s*(\w+)/m.exec(read(`${chart}/templates/${f}`))?.[1]);
    expect(kinds.sort()).toEqual(
      [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
      ].sort(),
    );
    const chartYaml = parse(read(`${chart}/Chart.yaml`));
    expect(chartYaml.appVersion).toBe(JSON.parse(read("package.json")).version);
  });
});
