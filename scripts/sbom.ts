/**
 * `npm run sbom [-- --out FILE]`: the CycloneDX bill of materials of eProxy's production
 * dependencies (requirement 102-4), from `npm sbom --sbom-format cyclonedx --omit dev` (works
 * offline: it reads the lockfile and node_modules). Two of npm's slips are mended: components npm
 * itself marks as development (`cdx:npm:package:development`, e.g. the platform package the `node`
 * devDependency installs as extraneous) are dropped, and names npm took from a folder (the root
 * package and workspace links, named after their directories) are taken from the bom-ref.
 * Default output: .ci/out/sbom.cdx.json.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

interface Component {
  "bom-ref": string;
  name: string;
  version?: string;
  properties?: Array<{ name: string; value: string }>;
}
interface Bom {
  bomFormat: string;
  specVersion: string;
  metadata: { component: Component };
  components: Component[];
  dependencies?: Array<{ ref: string; dependsOn?: string[] }>;
}

const { values } = parseArgs({ options: { out: { type: "string" } } });
const out = values.out ?? ".ci/out/sbom.cdx.json";

const npm = spawnSync("npm", ["sbom", "--sbom-format", "cyclonedx", "--omit", "dev"], {
  encoding: "utf8",
  maxBuffer: 64 * 1024 * 1024,
  timeout: 120_000,
});
if (npm.status !== 0) {
  process.stderr.write(`npm sbom failed (status ${npm.status}): ${npm.stderr}\n`);
  process.exit(1);
}
const bom = JSON.parse(npm.stdout) as Bom;
if (bom.bomFormat !== "CycloneDX") throw new Error(`not a CycloneDX document: ${bom.bomFormat}`);

/** `@scope/name@1.2.3` → `@scope/name`. */
const nameOf = (ref: string) => ref.slice(0, ref.lastIndexOf("@") > 0 ? ref.lastIndexOf("@") : ref.length);
const isDev = (c: Component) =>
  (c.properties ?? []).some((p) => p.name === "cdx:npm:package:development" && p.value === "true");

const dropped = bom.components.filter(isDev).map((c) => c["bom-ref"]);
bom.components = bom.components.filter((c) => !isDev(c)).map((c) => ({ ...c, name: nameOf(c["bom-ref"]) }));
bom.metadata.component.name = nameOf(bom.metadata.component["bom-ref"]);
if (bom.dependencies) {
  const gone = new Set(dropped);
  bom.dependencies = bom.dependencies
    .filter((d) => !gone.has(d.ref))
    .map((d) => ({ ...d, ...(d.dependsOn ? { dependsOn: d.dependsOn.filter((r) => !gone.has(r)) } : {}) }));
}

mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(bom, null, 2)}\n`);
process.stdout.write(
  `CycloneDX ${bom.specVersion} SBOM of ${bom.metadata.component.name}@${bom.metadata.component.version}: ` +
    `${bom.components.length} production components -> ${out}` +
    (dropped.length > 0 ? ` (dropped, marked development by npm: ${dropped.join(", ")})` : "") +
    "\n",
);
