import { defineConfig } from "vitest/config";

/**
 * Test tiers: pure unit tests, integration tests against real servers, end-to-end CLI runs. The
 * global setup belongs to the root only: Vitest runs the root's once and every project's again, so
 * projects do not `extends: true` it (it started a Redis, a FerretDB and a PKI per project). Projects
 * still see what it provides (a project's provided context falls back to the root's).
 */
export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.int.test.ts", "test/**/*.e2e.test.ts"],
        },
      },
      {
        test: { name: "int", include: ["test/**/*.int.test.ts"], testTimeout: 60_000, hookTimeout: 60_000 },
      },
      {
        test: { name: "e2e", include: ["test/**/*.e2e.test.ts"], testTimeout: 120_000, hookTimeout: 60_000 },
      },
    ],
  },
});
