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
import { createTraceRoutes, TRACE_TYPES } from "../../src/rest/trace-routes.ts";
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

  it("gives every operation explicit responses: no catch-all `default`", () => {
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        const statuses = Object.keys(op.responses);
        expect(statuses, `${method} ${path}`).not.toContain("default");
        for (const s of statuses) expect(s, `${method} ${path}`).toMatch(/^[1-5](\d\d|XX)$/);
        // An unexpected failure is a documented answer too (a problem or a SOAP fault, INTERNAL).
        expect(statuses, `${method} ${path}`).toContain("500");
      }
    }
  });

  it("has the trace types the query route enforces (TraceType enum, used by the query and the trace)", () => {
    expect(doc.components.schemas.TraceType.enum).toEqual([...TRACE_TYPES]);
    expect(doc.components.schemas.Trace.properties.type).toEqual({ $ref: "#/components/schemas/TraceType" });
    const type = doc.paths["/traces"].get.parameters.find((p: { name: string }) => p.name === "type");
    expect(type.schema).toEqual({ $ref: "#/components/schemas/TraceType" });
  });

  it("marks as required what the server requires, and gives the enums it enforces", () => {
    const callback = doc.paths["/oauth2/codeflow/{clientId}/callback"].get.parameters;
    expect(callback.find((p: { name: string }) => p.name === "state").required).toBe(true);
    const mode = doc.paths["/oauth2/ciba"].post.parameters.find((p: { name: string }) => p.name === "mode");
    expect(mode.schema.enum).toEqual(["async"]);
  });

  it("lists eProxy's error codes", () => {
    expect([...doc.components.schemas.Problem.properties.code.enum].sort()).toEqual(
      Object.keys(ERROR_CODES).sort(),
    );
  });
});
