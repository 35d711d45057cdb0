/**
 * `npm run docs:generate`: writes the generated pages of docs/reference/ (see docs-reference.ts).
 */
import { writeFileSync } from "node:fs";
import { generatedReferences } from "./docs-reference.ts";

for (const [file, content] of Object.entries(await generatedReferences())) {
  writeFileSync(file, content);
  process.stdout.write(`wrote ${file}\n`);
}
