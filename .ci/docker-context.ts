/**
 * Which files Docker sends to the builder under `.dockerignore`, with Docker's rules: the last matching
 * pattern wins, `!` re-includes, a pattern matching a directory covers everything below it. Used by
 * test/unit/deployment.test.ts and, run as a script (`git ls-files | node .ci/docker-context.ts`), by
 * .ci/deploy-checks.sh to assemble the image's file set without a container engine.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The patterns of a `.dockerignore` file (comments and blank lines dropped). */
export function dockerignorePatterns(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

function toRegex(p: string): RegExp {
  return new RegExp(
    `^${p
      .replace(/\/+$/, "")
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*\*\/?/g, "§")
      .replace(/\*/g, "[^/]*")
      .replace(/\?/g, "[^/]")
      .replace(/§/g, "(?:.*/)?")}(?:/.*)?$`,
  );
}

/** Whether Docker would send `file` (a repository path) to the builder under `patterns`. */
export function inBuildContext(file: string, patterns: readonly string[]): boolean {
  let included = true;
  for (const raw of patterns) {
    const negated = raw.startsWith("!");
    if (toRegex(negated ? raw.slice(1) : raw).test(file)) included = negated;
  }
  return included;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const patterns = dockerignorePatterns(readFileSync(".dockerignore", "utf8"));
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  for (const file of input.split("\n").filter(Boolean)) {
    if (inBuildContext(file, patterns)) process.stdout.write(`${file}\n`);
  }
}
