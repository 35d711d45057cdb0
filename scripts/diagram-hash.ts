/** The hash docs/architecture.svg records of the .dot source it was rendered from. */
import { createHash } from "node:crypto";

/** SHA-256 (hex) of a diagram's source text. */
export function diagramSourceHash(source: Uint8Array | string): string {
  return createHash("sha256").update(source).digest("hex");
}
