/**
 * The user documentation's Markdown files: the README, every page under docs/, and the project files
 * next to the README. Tests that check the documentation against the code read them through here.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

/** Project files beside the README that link into the documentation. */
const ROOT_FILES = ["README.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md", "bench/README.md"];

/** Markdown files of the documentation, repository-relative, README first, then docs/ in path order. */
export function docFiles(root = "."): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(path.join(root, dir), { withFileTypes: true })
      .flatMap((e) =>
        e.isDirectory()
          ? walk(path.join(dir, e.name))
          : e.name.endsWith(".md")
            ? [path.join(dir, e.name)]
            : [],
      )
      .sort();
  const existing = ROOT_FILES.filter((f) => {
    try {
      readFileSync(path.join(root, f));
      return true;
    } catch {
      return false;
    }
  });
  return [...existing, ...walk("docs"), ...walk("bench/reports")];
}

/** The README and every page under docs/, concatenated (for "the documentation names X" checks). */
export function allDocText(root = "."): string {
  return docFiles(root)
    .filter((f) => f === "README.md" || f.startsWith("docs/"))
    .map((f) => readFileSync(path.join(root, f), "utf8"))
    .join("\n");
}
