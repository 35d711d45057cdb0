// Turns the Kubernetes JSON schemas shipped in the kubernetes-validate wheel (PyPI) into schemas
// kubeconform can load from disk: they refer to "/api/_definitions.json" under an https $id, which a
// local registry cannot resolve; here every $ref points at the _definitions.json beside the file.
// Usage: node .ci/k8s-schemas.mjs WHEEL VERSION OUTDIR   (VERSION like v1.33.0)
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";

const [wheel, version, out] = process.argv.slice(2);
const prefix = `kubernetes_validate/kubernetes-json-schema/${version}-local-strict/`;
mkdirSync(out, { recursive: true });
// The wheel is a zip: python's zipfile lists and reads it without unpacking 17,000 files.
const files = JSON.parse(
  execFileSync(
    "python3",
    [
      "-c",
      "import json,sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); p=sys.argv[2]; " +
        "print(json.dumps({n[len(p):]: z.read(n).decode() for n in z.namelist() if n.startswith(p) and n.endswith('.json')}))",
      wheel,
      prefix,
    ],
    { maxBuffer: 1024 * 1024 * 1024 },
  ).toString(),
);
const fix = (v) => {
  if (Array.isArray(v)) return v.map(fix);
  if (!v || typeof v !== "object") return v;
  const o = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === "$id") continue;
    o[k] = k === "$ref" && typeof x === "string" ? x.replace(/^\/api\/_definitions\.json/, "_definitions.json") : fix(x);
  }
  return o;
};
let n = 0;
for (const [name, text] of Object.entries(files)) {
  writeFileSync(path.join(out, name), JSON.stringify(fix(JSON.parse(text))));
  n++;
}
if (n === 0) throw new Error(`no schemas under ${prefix} in ${wheel}`);
console.log(`k8s-schemas: ${n} schemas for Kubernetes ${version} in ${out}`);
