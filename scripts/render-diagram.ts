/**
 * `npm run docs:diagram`: renders docs/architecture.dot to docs/architecture.svg with Graphviz `dot`
 * (Debian package graphviz) and records the source's SHA-256 in the SVG, so that a test can tell a
 * stale picture from its source without Graphviz.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { diagramSourceHash } from "./diagram-hash.ts";

const source = "docs/architecture.dot";
const svg = execFileSync("dot", ["-Tsvg", source], { encoding: "utf8" });
const marked = svg.replace(
  /(<svg\b)/,
  `<!-- source ${source} sha256:${diagramSourceHash(readFileSync(source))} -->\n$1`,
);
writeFileSync("docs/architecture.svg", marked);
process.stdout.write("wrote docs/architecture.svg\n");
