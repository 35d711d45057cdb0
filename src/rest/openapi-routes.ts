/**
 * `GET /openapi.json`: the OpenAPI 3.1 document of the REST facade (`openapi.json` beside this file,
 * linted in CI, and every REST answer of the integration tests is validated against it), served
 * with this deployment's public URL as its server.
 */
import document from "./openapi.json" with { type: "json" };
import { writeHead } from "./respond.ts";
import type { Route } from "./router.ts";

/** The route serving the document; `publicBaseUrl` becomes its only server. */
export function createOpenApiRoutes(publicBaseUrl: string): Route[] {
  // Serialized once: the document does not change while the process runs.
  const body = Buffer.from(
    JSON.stringify({ ...document, servers: [{ url: publicBaseUrl, description: "this eProxy" }] }),
  );
  return [
    {
      method: "GET",
      pattern: "/openapi.json",
      handler: ({ res }) => {
        writeHead(res, 200, {
          "content-type": "application/json",
          "content-length": body.length,
          "cache-control": "public, max-age=300",
        });
        res.end(body);
      },
    },
  ];
}
