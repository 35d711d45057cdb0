import { defineConfig } from "vitest/config";

/** Test tiers: pure unit tests, integration tests against real servers, end-to-end CLI runs. */
export default defineConfig({
  test: {
    globalSetup: ["test/support/global-setup.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.int.test.ts", "test/**/*.e2e.test.ts"],
        },
      },
      {
        extends: true,
        test: { name: "int", include: ["test/**/*.int.test.ts"], testTimeout: 60_000, hookTimeout: 60_000 },
      },
      {
        extends: true,
        test: { name: "e2e", include: ["test/**/*.e2e.test.ts"], testTimeout: 120_000, hookTimeout: 60_000 },
      },
    ],
  },
});
