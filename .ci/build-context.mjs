// Prints the files of `git ls-files` (stdin) that Docker would send to the builder under .dockerignore,
// with Docker's rules: the last matching pattern wins, `!` re-includes, a pattern matching a directory
// covers everything below it. (test/unit/deployment.test.ts applies the same rules.)
import { readFileSync } from "node:fs";

const patterns = readFileSync(".dockerignore", "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const toRegex = (p) =>
  new RegExp(
    `^${p
      .replace(/\/+$/, "")
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*\*\/?/g, "§")
      .replace(/\*/g, "[^/]*")
      .replace(/\?/g, "[^/]")
      .replace(/§/g, "(?:.*/)?")}(?:/.*)?$`,
  );
const rules = patterns.map((raw) => ({ negated: raw.startsWith("!"), re: toRegex(raw.replace(/^!/, "")) }));
let input = "";
for await (const chunk of process.stdin) input += chunk;
for (const file of input.split("\n").filter(Boolean)) {
  let included = true;
  for (const r of rules) if (r.re.test(file)) included = r.negated;
  if (included) console.log(file);
}
