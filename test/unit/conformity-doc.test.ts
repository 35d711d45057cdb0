import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

/**
 * CONFORMITY.md stays true: every test it cites exists under its exact name, every source path it
 * names exists, every configuration key it names is in the configuration reference, each requirement
 * has its section with at least one test, and the OWASP Top 10 table has its ten dated rows.
 */
const DOC = readFileSync("CONFORMITY.md", "utf8");
const REQUIREMENTS = ["102-1", "102-4", "109", "115", "117", "119", "127"];

/** `file` › "name" references. */
function citedTests(text: string): Array<{ file: string; name: string }> {
  return [...text.matchAll(/`(test\/[\w./-]+\.test\.ts)` › "([^"]+)"/g)].map((m) => ({
    file: m[1] as string,
    name: m[2] as string,
  }));
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** True when `source` declares a test (`it`/`test`, modifiers allowed) named exactly `name`. */
function declaresTest(source: string, name: string): boolean {
  const quoted = ['"', "'", "`"].map((q) => `${q}${escapeRegExp(name)}${q}`).join("|");
  return new RegExp(`\\b(?:it|test)(?:\\.\\w+(?:\\([^()]*\\))?)*\\(\\s*(?:${quoted})`).test(source);
}

function sectionOf(id: string): string {
  const start = DOC.search(new RegExp(`^## ${escapeRegExp(id)} `, "m"));
  if (start < 0) return "";
  const next = DOC.slice(start + 3).search(/^## /m);
  return next < 0 ? DOC.slice(start) : DOC.slice(start, start + 3 + next);
}

describe("CONFORMITY.md", () => {
  it("cites only tests that exist, under their exact names", () => {
    const cited = citedTests(DOC);
    expect(cited.length).toBeGreaterThan(40);
    const wrong = cited.filter(
      ({ file, name }) => !existsSync(file) || !declaresTest(readFileSync(file, "utf8"), name),
    );
    expect(wrong.map((c) => `${c.file} › ${c.name}`)).toEqual([]);
  });

  it("has a section for each requirement, each proved by at least one test", () => {
    for (const id of REQUIREMENTS) {
      const section = sectionOf(id);
      expect(section, `no "## ${id} " section`).not.toBe("");
      expect(citedTests(section).length, `section ${id} cites no test`).toBeGreaterThan(0);
    }
  });

  it("names only source files that exist and configuration keys of the reference", () => {
    const paths = [...DOC.matchAll(/`((?:src|scripts)\/[\w./-]+\.ts)`/g)].map((m) => m[1] as string);
    expect(paths.length).toBeGreaterThan(10);
    expect(paths.filter((p) => !existsSync(p))).toEqual([]);
    const reference = readFileSync("docs/reference/configuration.md", "utf8");
    const keys = [
      ...DOC.matchAll(
        /`((?:server|psc|clients\[\]|teleservices\[\]|sessions|stores|traces|alerts|admin|tracing|log)\.[\w.[\]]+)`/g,
      ),
    ].map((m) => m[1] as string);
    expect(keys.length).toBeGreaterThan(15);
    expect(keys.filter((k) => !reference.includes(`| \`${k}\` |`))).toEqual([]);
  });

  it("has the OWASP Top 10 (2021) table: ten rows, each with a measure, a date, a residual risk and a mitigation", () => {
    const rows = sectionOf("127")
      .split("\n")
      .filter((l) => /^\| A\d\d /.test(l));
    expect(rows.map((r) => r.slice(2, 5))).toEqual([
      "A01",
      "A02",
      "A03",
      "A04",
      "A05",
      "A06",
      "A07",
      "A08",
      "A09",
      "A10",
    ]);
    for (const row of rows) {
      const cells = row.split(" | ");
      expect(cells, row).toHaveLength(5);
      expect(cells[2], row).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(cells[3], row).toMatch(/^(low|medium|high)\b/);
      expect(citedTests(row).length, `${row.slice(0, 40)} cites no test`).toBeGreaterThan(0);
    }
  });

  it("would see a renamed test (the check can fail)", () => {
    const source = 'it("keeps the tokens out of the logs", () => {});\n  it.skipIf(!x)(\n    "works",';
    expect(declaresTest(source, "keeps the tokens out of the logs")).toBe(true);
    expect(declaresTest(source, "works")).toBe(true);
    expect(declaresTest(source, "keeps the tokens out of logs")).toBe(false);
    expect(declaresTest('describe("keeps", () => {})', "keeps")).toBe(false);
  });
});
