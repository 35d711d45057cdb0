/**
 * Checks a REST answer against the OpenAPI document (src/rest/openapi.json): the path and method are
 * documented, the status is (exactly, or by its range such as `5XX`), the Content-Type is one the
 * document lists, and a JSON body validates against its schema (JSON Schema 2020-12, as OpenAPI 3.1
 * uses).
 * Problem answers must also name their code in `x-eproxy-error`. The integration tests' REST
 * helpers call it on every answer, so the document cannot drift from the behaviour.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import document from "../../src/rest/openapi.json" with { type: "json" };

type Json = Record<string, any>;
const doc = document as Json;
const DOC_ID = "https://eproxy.invalid/openapi.json";
// ajv-formats is CommonJS: its default export is the plugin function.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, DOC_ID);

/** A REST answer as a test helper received it. */
export interface RestAnswer {
  status: number;
  headers: Record<string, unknown>;
  body: string;
}

const pointer = (parts: string[]) =>
  parts.map((p) => p.replaceAll("~", "~0").replaceAll("/", "~1")).join("/");

function templateRegex(template: string): RegExp {
  const re = template
    .split("/")
    .map((seg) =>
      seg === "{path}" ? ".+" : /^\{\w+\}$/.test(seg) ? "[^/]+" : seg.replace(/[.*+?^$()|[\]\\]/g, "\\$&"),
    )
    .join("/");
  return new RegExp(`^${re}$`);
}

const templates = Object.keys(doc.paths as Json).map((t) => ({
  template: t,
  re: templateRegex(t),
  params: (t.match(/\{/g) ?? []).length,
}));

/** Follows a local `$ref` (`#/components/...`), returning the object and its JSON pointer parts. */
function deref(obj: Json, at: string[]): { obj: Json; at: string[] } {
  if (typeof obj.$ref !== "string") return { obj, at };
  const parts = (obj.$ref as string).replace(/^#\//, "").split("/");
  return deref(
    parts.reduce((o: Json, p) => o[p], doc),
    parts,
  );
}

function header(h: Record<string, unknown>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? String(v[0]) : v === undefined ? undefined : String(v);
}

function validate(schemaAt: string[], value: unknown, what: string): void {
  const ref = `${DOC_ID}#/${pointer(schemaAt)}`;
  const check = ajv.getSchema(ref);
  if (!check) throw new Error(`openapi: no schema at ${ref}`);
  if (!check(value)) {
    throw new Error(
      `openapi: ${what} does not match the document: ${ajv.errorsText(check.errors, { separator: "; " })}\n${JSON.stringify(value).slice(0, 2000)}`,
    );
  }
}

/**
 * Throws unless `answer` to `method path` is what the OpenAPI document says. Paths that no route
 * serves are answered 404 (and methods a path does not have, 405) with a problem document.
 */
export function expectDocumentedAnswer(method: string, path: string, answer: RestAnswer): void {
  const pathname = new URL(path, "https://eproxy.invalid").pathname;
  // gRPC, gRPC-Web and Connect procedures (`/package.Service/Method`) are the proto's, not REST.
  if (/^\/[a-z][\w]*(\.[\w]+)+\/\w+$/.test(pathname)) return;
  const what = `${method} ${pathname} → ${answer.status}`;
  const candidates = templates.filter((t) => t.re.test(pathname)).sort((a, b) => a.params - b.params);
  const lower = method.toLowerCase();
  const found = candidates.find((t) => (doc.paths as Json)[t.template][lower]);
  const contentType =
    (header(answer.headers, "content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (!found) {
    const expected = candidates.length > 0 ? 405 : 404;
    if (answer.status !== expected || contentType !== "application/problem+json") {
      throw new Error(`openapi: ${what} is not documented (${method} ${pathname} has no operation)`);
    }
    validate(["components", "schemas", "Problem"], JSON.parse(answer.body), what);
    return;
  }
  const opAt = ["paths", found.template, lower];
  const op = opAt.reduce((o: Json, p) => o[p], doc);
  // The exact status, else its range (`4XX`: a teleservice's own status through /send); never `default`.
  const exact = String(answer.status);
  const key = op.responses[exact] ? exact : `${exact[0]}XX`;
  if (!op.responses[key]) throw new Error(`openapi: ${what}: status ${answer.status} is not documented`);
  const { obj: response, at } = deref(op.responses[key], [...opAt, "responses", key]);
  if (!response.content) {
    if (answer.body !== "") throw new Error(`openapi: ${what}: the document says no body, got one`);
    return;
  }
  if (!response.content[contentType]) {
    throw new Error(
      `openapi: ${what}: Content-Type ${contentType || "(none)"} not in ${Object.keys(response.content).join(", ")}`,
    );
  }
  if (!/^application\/([\w.-]+\+)?json$/.test(contentType)) return;
  const body = JSON.parse(answer.body);
  validate([...at, "content", contentType, "schema"], body, `${what} body`);
  if (contentType === "application/problem+json" && header(answer.headers, "x-eproxy-error") !== body.code) {
    throw new Error(`openapi: ${what}: x-eproxy-error is not the problem's code ${body.code}`);
  }
}

/** Every media-type example of the document, with where its schema is (for the document's own test). */
export function documentExamples(): Array<{ name: string; schemaAt: string[]; value: unknown }> {
  const out: Array<{ name: string; schemaAt: string[]; value: unknown }> = [];
  const walk = (node: unknown, at: string[]) => {
    if (!node || typeof node !== "object") return;
    const n = node as Json;
    if (n.schema && n.examples && typeof n.examples === "object" && !Array.isArray(n.examples)) {
      for (const [name, ex] of Object.entries(n.examples as Json)) {
        out.push({ name: `${at.join(" ")} ${name}`, schemaAt: [...at, "schema"], value: (ex as Json).value });
      }
    }
    for (const [k, v] of Object.entries(n)) walk(v, [...at, k]);
  };
  walk(doc, []);
  return out;
}

/** Validates `value` against the schema at `schemaAt` in the document (throws on mismatch). */
export function expectMatchesSchema(schemaAt: string[], value: unknown, what: string): void {
  validate(schemaAt, value, what);
}
