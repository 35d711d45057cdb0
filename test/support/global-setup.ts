/**
 * Runs once before every tier: creates the development PKI the tests share, and (in later tiers)
 * starts the real servers they need.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { ensureDevPki } from "../../src/infra/dev-pki.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** Directory of the shared test PKI (ca.pem, server.pem, clients/<id>.pem). */
    pkiDir: string;
  }
}

/** Client ids the tests use. */
export const TEST_CLIENT_IDS = ["lps-demo", "lps-other"];

export default async function setup(project: TestProject): Promise<() => void> {
  const dir = mkdtempSync(path.join(tmpdir(), "eproxy-test-pki-"));
  await ensureDevPki(dir, TEST_CLIENT_IDS);
  project.provide("pkiDir", dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
