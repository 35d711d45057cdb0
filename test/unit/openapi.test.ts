/**
 * The OpenAPI document of the REST facade: valid OpenAPI 3.1 (swagger-parser validates it against
 * the specification's schema), every example matches its schema, every route the server registers
 * is documented and every documented operation is served, and the error codes are eProxy's.
 */
import SwaggerParser from "@apidevtools/swagger-parser";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/errors.ts";
import { createAuthRoutes } from "../../src/rest/auth-routes.ts";
import { createHealthRoutes } from "../../src/rest/health-routes.ts";
import document from "../../src/rest/openapi.json" with { type: "json" };
import { createOpenApiRoutes } from "../../src/rest/openapi-routes.ts";
import { createRelayRoutes } from "../../src/rest/relay-routes.ts";
import { createTraceRoutes } from "../../src/rest/trace-routes.ts";
import { documentExamples, expectMatchesSchema } from "../support/openapi.ts";

const doc = document as Record<string, any>;

describe("openapi.json", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    const api = await SwaggerParser.validate(structuredClone(doc) as never);
    expect((api as { openapi: string }).openapi).toBe("3.1.0");
  });

  it("has examples, and every example matches its schema", () => {
    const examples = documentExamples();
    expect(examples.length).toBeGreaterThan(10);
    for (const ex of examples) expectMatchesSchema(ex.schemaAt, ex.value, `example ${ex.name}`);
  });

  it("documents exactly the routes the server registers", () => {
    const deps = {} as never;
    const routes = [
      ...createHealthRoutes(deps),
      ...createAuthRoutes(deps),
      ...createRelayRoutes(deps),
      ...createTraceRoutes(deps),
      ...createOpenApiRoutes("https://eproxy.example"),
    ];
    const served = new Set<string>();
    for (const r of routes) {
      const template = r.pattern.replace(/:(\w+)/g, "{$1}");
      if (template.endsWith("/*")) {
        served.add(`${r.method} ${template.slice(0, -2)}`);
        served.add(`${r.method} ${template.slice(0, -1)}{path}`);
      } else served.add(`${r.method} ${template}`);
    }
    const documented = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths as Record<string, object>)) {
      for (const method of Object.keys(item)) documented.add(`${method.toUpperCase()} ${path}`);
    }
    expect([...documented].sort()).toEqual([...served].sort());
  });

  it("lists eProxy's error codes", () => {
    expect([...doc.components.schemas.Problem.properties.code.enum].sort()).toEqual(
      Object.keys(ERROR_CODES).sort(),
    );
  });
});
