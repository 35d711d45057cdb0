/**
 * A directory the trace spool cannot write to, as in production: a full volume (a small tmpfs) or a
 * read-only one. Mounting needs root; otherwise a directory without write permission stands in for
 * both (the writer meets EACCES instead of ENOSPC/EROFS, and handles them alike).
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** A directory that fills up after `bytes` (full) or refuses every write (readonly). */
export interface UnwritableDir {
  dir: string;
  /** What the writer meets: a full tmpfs, a read-only tmpfs, or a directory without permission. */
  kind: "tmpfs-full" | "tmpfs-readonly" | "no-permission" | "none";
  /** Unmounts or restores permissions. */
  release(): void;
}

/** Creates the directory; `full` wants room for `bytes` only, `readonly` no write at all. */
export function unwritableDir(mode: "full" | "readonly", bytes = 64 * 1024): UnwritableDir {
  const dir = mkdtempSync(path.join(tmpdir(), `eproxy-${mode}-`));
  if (process.getuid?.() === 0) {
    try {
      const options = mode === "full" ? `size=${bytes},mode=0700` : "ro,size=64k,mode=0700";
      execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir], { stdio: "ignore" });
      return {
        dir,
        kind: mode === "full" ? "tmpfs-full" : "tmpfs-readonly",
        release: () => execFileSync("umount", [dir], { stdio: "ignore" }),
      };
    } catch {
      // No mount in this container, and root ignores permissions: the caller skips.
      return { dir, kind: "none", release: () => {} };
    }
  }
  chmodSync(dir, 0o500);
  return { dir, kind: "no-permission", release: () => chmodSync(dir, 0o700) };
}
