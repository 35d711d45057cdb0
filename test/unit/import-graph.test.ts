/**
 * The layering of src/, read from the import statements themselves (TypeScript's own pre-processor,
 * so comments and strings are not mistaken for imports): transports at the edges, the domain in
 * the middle, adapters at the bottom. A dependency-cruiser configuration would say the same in a
 * second language and a tool with its own resolver; five rules over ~60 files do not need one.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const SRC = path.resolve("src");

/** Every .ts file of src/, as a path relative to src/. */
function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const full = path.join(dir, d.name);
    if (d.isDirectory()) return sourceFiles(full);
    return d.name.endsWith(".ts") ? [path.relative(SRC, full)] : [];
  });
}

/** The module specifiers a file imports (static, type-only, re-exports and dynamic imports). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(path.join(SRC, file), "utf8"), true, true);
  return info.importedFiles.map((f) => f.fileName);
}

/** The import graph of src/: relative imports resolved to src-relative paths, packages by name. */
function graph(): Map<string, { local: string[]; packages: string[] }> {
  const g = new Map<string, { local: string[]; packages: string[] }>();
  for (const file of sourceFiles()) {
    const local: string[] = [];
    const packages: string[] = [];
    for (const spec of importsOf(file)) {
      if (spec.startsWith(".")) {
        const target = path.relative(SRC, path.resolve(SRC, path.dirname(file), spec));
        if (!target.startsWith("..")) local.push(target);
      } else if (!spec.startsWith("node:")) packages.push(spec);
    }
    g.set(file, { local, packages });
  }
  return g;
}

/** Cycles of a directed graph (one per strongly connected component larger than one node). */
function cyclesOf(edges: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, idx.get(w) as number));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (edges.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of edges.keys()) if (!idx.has(v)) visit(v);
  return out;
}

const layer = (file: string) => file.split(path.sep)[0] as string;
const DOMAIN = ["auth", "relay", "trace"];
const FOREIGN_IO = /^(@connectrpc\/|undici$|mongodb$|ioredis$)/;

/** Imports of `g` from files in one of `from` to files in one of `to` (top-level folders). */
function crossings(g: ReturnType<typeof graph>, from: string[], to: string[]): string[] {
  return [...g].flatMap(([file, { local }]) =>
    from.includes(layer(file))
      ? local.filter((t) => to.includes(layer(t))).map((t) => `${file} -> ${t}`)
      : [],
  );
}

describe("import graph of src/", () => {
  const g = graph();

  it("reads the real tree (the rules below look at something)", () => {
    expect(g.size).toBeGreaterThan(40);
    expect(g.get("server.ts")?.local).toContain("deps.ts");
  });

  it("has no import cycle", () => {
    const edges = new Map([...g].map(([f, { local }]) => [f, local.filter((t) => g.has(t))]));
    expect(cyclesOf(edges)).toEqual([]);
  });

  it("finds a cycle when there is one (the check above can fail)", () => {
    const edges = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts"]],
      ["d.ts", ["a.ts"]],
    ]);
    expect(cyclesOf(edges)).toEqual([["a.ts", "b.ts", "c.ts"]]);
  });

  it("keeps the two transports apart: no rest/ -> rpc/ and no rpc/ -> rest/", () => {
    expect(crossings(g, ["rest"], ["rpc"])).toEqual([]);
    expect(crossings(g, ["rpc"], ["rest"])).toEqual([]);
  });

  it("keeps the domain (auth/, relay/, trace/) and the shared http/ module off infra/ and transports", () => {
    expect(crossings(g, [...DOMAIN, "http"], ["infra", "rest", "rpc"])).toEqual([]);
  });

  it("keeps the sandbox's simulators out of production code (only the CLI's dev commands load them)", () => {
    const loaders = [...g]
      .filter(([file, { local }]) => layer(file) !== "sandbox" && local.some((t) => layer(t) === "sandbox"))
      .map(([file]) => file);
    expect(loaders).toEqual(["cli.ts"]);
    expect(importsOf("cli.ts").filter((s) => s.includes("sandbox/"))).toEqual(
      // Dynamic imports only: `serve` never evaluates the simulators.
      [
        ...readFileSync(path.join(SRC, "cli.ts"), "utf8").matchAll(
          /import\(\s*"([^"]*sandbox\/[^"]*)"\s*\)/g,
        ),
      ].map((m) => m[1]),
    );
  });

  it("keeps the sandbox console out of what `eproxy serve` loads (static and dynamic imports from its modules)", () => {
    // The modules `serve` imports, read from the CLI's serve function itself.
    const cli = readFileSync(path.join(SRC, "cli.ts"), "utf8");
    const serveBody = cli.slice(
      cli.indexOf("async function serve("),
      cli.indexOf("\n}\n", cli.indexOf("async function serve(")),
    );
    const roots = [...serveBody.matchAll(/import\(\s*"\.\/([^"]+)"\s*\)/g)].map((m) => m[1] as string);
    expect(roots).toEqual(expect.arrayContaining(["config.ts", "deps.ts", "server.ts"]));
    const loaded = new Set<string>();
    const todo = [...roots];
    while (todo.length) {
      const f = todo.pop() as string;
      if (loaded.has(f) || !g.has(f)) continue;
      loaded.add(f);
      todo.push(...(g.get(f)?.local ?? []));
    }
    expect(loaded.size).toBeGreaterThan(40);
    expect([...loaded].filter((f) => layer(f) === "sandbox")).toEqual([]);
    // The console is loaded by the sandbox only.
    const consoleLoaders = [...g]
      .filter(
        ([f, { local }]) =>
          !f.startsWith(`sandbox${path.sep}console`) &&
          local.some((t) => t.startsWith(`sandbox${path.sep}console`)),
      )
      .map(([f]) => f);
    expect(consoleLoaders).toEqual([path.join("sandbox", "sandbox.ts")]);
  });

  it("keeps Connect, undici, MongoDB and Redis clients out of the domain and of http/", () => {
    const offending = [...g].flatMap(([file, { packages }]) =>
      [...DOMAIN, "http"].includes(layer(file))
        ? packages.filter((p) => FOREIGN_IO.test(p)).map((p) => `${file} -> ${p}`)
        : [],
    );
    expect(offending).toEqual([]);
  });

  it("keeps prom-client and OpenTelemetry behind the telemetry port (observe/ and the domain never load them)", () => {
    const offending = [...g].flatMap(([file, { packages, local }]) =>
      [...DOMAIN, "http", "observe"].includes(layer(file))
        ? [
            ...packages.filter((p) => /^(prom-client$|@opentelemetry\/)/.test(p)),
            ...local.filter((t) => layer(t) === "infra"),
          ].map((p) => `${file} -> ${p}`)
        : [],
    );
    expect(offending).toEqual([]);
  });
});
