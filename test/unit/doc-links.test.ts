/**
 * The documentation's links: every relative link in the README, docs/ and the project files resolves
 * to a file of the repository, and every `#anchor` into a Markdown file names one of its headings
 * (GitHub's slugs). The README stays a front door: at most 150 lines, no dated benchmark diary.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { diagramSourceHash } from "../../scripts/diagram-hash.ts";
import { docFiles } from "../support/docs.ts";

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/<[^>]+>/g, "")
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** Anchors of a Markdown file (`#`-headings outside code fences, duplicates numbered as GitHub does). */
function anchorsOf(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) fence = !fence;
    const m = fence ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const base = slug(m[1] as string);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Relative link targets of a Markdown text (inline links and images, outside code fences and spans). */
function linksOf(markdown: string): string[] {
  const text = markdown.replace(/^\s*```[\s\S]*?^\s*```/gm, "").replace(/`[^`\n]*`/g, "");
  return [...text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((m) => m[1] as string)
    .filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t));
}

/** Broken links of one file: targets that do not exist, anchors that name no heading. */
function brokenLinks(file: string): string[] {
  const broken: string[] = [];
  const source = readFileSync(file, "utf8");
  for (const link of linksOf(source)) {
    const [target = "", anchor] = link.split("#", 2);
    const resolved = target === "" ? file : path.join(path.dirname(file), decodeURIComponent(target));
    if (!existsSync(resolved)) {
      broken.push(`${file}: ${link} (no such file)`);
      continue;
    }
    if (anchor && resolved.endsWith(".md") && statSync(resolved).isFile()) {
      if (!anchorsOf(readFileSync(resolved, "utf8")).has(anchor))
        broken.push(`${file}: ${link} (no heading #${anchor} in ${resolved})`);
    }
  }
  return broken;
}

describe("documentation links", () => {
  const files = docFiles();

  it("covers the README and the docs tree", () => {
    expect(files).toContain("README.md");
    expect(files).toContain("docs/README.md");
    expect(files.filter((f) => f.startsWith("docs/")).length).toBeGreaterThan(20);
  });

  it("every relative link resolves, anchors included", () => {
    expect(files.flatMap(brokenLinks)).toEqual([]);
  });

  it("every page under docs/ is reachable from the docs index or another page", () => {
    const linked = new Set<string>();
    for (const f of files) {
      for (const link of linksOf(readFileSync(f, "utf8"))) {
        const target = link.split("#", 1)[0] as string;
        if (target) linked.add(path.join(path.dirname(f), decodeURIComponent(target)));
      }
    }
    expect(files.filter((f) => f.startsWith("docs/") && f !== "docs/README.md" && !linked.has(f))).toEqual(
      [],
    );
  });

  it("finds a broken link and a broken anchor (the checks above can fail)", () => {
    expect(linksOf("see [a](docs/nope.md#x), `[b](c.md)`, [web](https://example.org)")).toEqual([
      "docs/nope.md#x",
    ]);
    expect(anchorsOf("# CIBA: reuse and `newSession`\n```\n# not a heading\n```\n## Two\n## Two")).toEqual(
      new Set(["ciba-reuse-and-newsession", "two", "two-1"]),
    );
  });
});

describe("the README", () => {
  const readme = readFileSync("README.md", "utf8");

  it("is a front door: at most 150 lines", () => {
    expect(readme.trimEnd().split("\n").length).toBeLessThanOrEqual(150);
  });

  it("carries no dated benchmark diary (bench/README.md and bench/reports/ do)", () => {
    expect(readme).not.toMatch(/\b(first|second|third|fourth|fifth|sixth|seventh) pass\b/i);
    expect(readme).not.toMatch(/load average/i);
    expect(readme).not.toMatch(/\b20\d\d-\d\d-\d\d\b/);
  });
});

describe("the architecture picture", () => {
  it("docs/architecture.svg was rendered from the current docs/architecture.dot (npm run docs:diagram)", () => {
    const svg = readFileSync("docs/architecture.svg", "utf8");
    const recorded = /<!-- source docs\/architecture\.dot sha256:([0-9a-f]{64}) -->/.exec(svg)?.[1];
    expect(recorded, "run npm run docs:diagram").toBe(
      diagramSourceHash(readFileSync("docs/architecture.dot")),
    );
  });
});
