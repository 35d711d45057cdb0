/**
 * The generated references (docs/reference/{configuration,environment,cli,error-codes,metrics}.md)
 * are rendered again from the sources and compared with the committed pages; the words they take
 * from tables next to the code (config-docs.ts, config-env.ts, errors.ts) cover every key; the
 * environment variables agree between config.ts, `eproxy serve --help` and eproxy.example.yaml.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configKeys, generatedReferences } from "../../scripts/docs-reference.ts";
import { COMMAND_USAGE } from "../../src/cli-usage.ts";
import { ENV_OVERRIDES } from "../../src/config.ts";
import { CONFIG_KEY_DOCS } from "../../src/config-docs.ts";
import { CONFIG_FILE_VARIABLE, ENV_VARIABLES } from "../../src/config-env.ts";

/** Keys of the schema without a sentence, and sentences for keys the schema does not have. */
function docGaps(keys: readonly string[], docs: Readonly<Record<string, string>>) {
  return {
    undocumented: keys.filter((k) => !docs[k]?.trim()),
    stale: Object.keys(docs).filter((k) => !keys.includes(k)),
  };
}

describe("generated references", async () => {
  const pages = await generatedReferences();

  it.each(Object.keys(pages))("%s is up to date", (file) => {
    const committed = readFileSync(file, "utf8");
    expect(committed === pages[file], `${file} differs from the sources: run npm run docs:generate`).toBe(
      true,
    );
  });

  it("every configuration key has a sentence in src/config-docs.ts, and every sentence a key", () => {
    expect(
      docGaps(
        configKeys().map((k) => k.path),
        CONFIG_KEY_DOCS,
      ),
    ).toEqual({ undocumented: [], stale: [] });
  });

  it("finds an undocumented key and a stale sentence (the check above can fail)", () => {
    expect(docGaps(["server.port", "server.newKey"], { "server.port": "x", "server.gone": "y" })).toEqual({
      undocumented: ["server.newKey"],
      stale: ["server.gone"],
    });
  });
});

describe("environment variables: one table", () => {
  const names = ENV_VARIABLES.map((v) => v.name);

  it("config.ts applies exactly the table, and reads no other EPROXY_ variable", () => {
    expect(Object.keys(ENV_OVERRIDES).sort()).toEqual([...names].sort());
    const source = readFileSync("src/config.ts", "utf8");
    const literal = [...new Set(source.match(/\bEPROXY_[A-Z0-9_]+/g) ?? [])];
    // EPROXY_X / EPROXY_X_FILE: the comments' placeholder for "any of them".
    const known = (n: string) =>
      names.includes(n) || n === CONFIG_FILE_VARIABLE || /^EPROXY_X(_FILE)?$/.test(n);
    expect(literal.filter((n) => !known(n))).toEqual([]);
  });

  it("eproxy serve --help lists every variable", () => {
    const help = COMMAND_USAGE.serve ?? "";
    expect(names.filter((n) => !new RegExp(`\\b${n}\\b`).test(help))).toEqual([]);
    expect(help).toContain(CONFIG_FILE_VARIABLE);
  });

  it("eproxy.example.yaml lists every variable and shows every key of the schema", () => {
    const example = readFileSync("eproxy.example.yaml", "utf8");
    expect(names.filter((n) => !new RegExp(`\\b${n}\\b`).test(example))).toEqual([]);
    // Every key's name appears as `name:` (set, or commented out with its default or an example).
    const missing = configKeys()
      .map((k) => k.path)
      .filter((p) => {
        const name = p.replace(/\[\]$/, "").split(".").at(-1)?.replace("[]", "") ?? p;
        return !new RegExp(`(^|[\\s{,#-])${name}:`, "m").test(example);
      });
    expect(missing).toEqual([]);
  });
});
