/**
 * Runnable documentation blocks: fenced code whose info string is `bash doctest` or `ts doctest`
 * (also indented, inside list items). The end-to-end test runs them against a sandbox.
 */

/** One runnable block of a Markdown file. */
export interface DocBlock {
  /** `bash` or `ts`. */
  lang: "bash" | "ts";
  /** The block's text, without the fence's indentation. */
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
}

/** The runnable blocks of a Markdown text, in order. */
export function docBlocks(markdown: string): DocBlock[] {
  const lines = markdown.split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(bash|ts) doctest\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const indent = (open[1] as string).length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j] as string); j++) {
      body.push(
        (lines[j] as string).slice(Math.min(indent, /^\s*/.exec(lines[j] as string)?.[0].length ?? 0)),
      );
    }
    if (j === lines.length) throw new Error(`unclosed doctest block at line ${i + 1}`);
    blocks.push({ lang: open[2] as "bash" | "ts", code: `${body.join("\n")}\n`, line: i + 1 });
    i = j;
  }
  return blocks;
}

/** The sandbox's default ports in the documentation, and where a test's sandbox listens instead. */
export interface SandboxPorts {
  proxy: number;
  psc: number;
  teleservices: number;
  admin: number;
}

/** Rewrites the documented sandbox ports (8443, 8444, 8445, 8446) to a test sandbox's. */
export function withPorts(code: string, ports: SandboxPorts): string {
  return code
    .replaceAll("localhost:8443", `localhost:${ports.proxy}`)
    .replaceAll("localhost:8444", `localhost:${ports.psc}`)
    .replaceAll("localhost:8445", `localhost:${ports.teleservices}`)
    .replaceAll("127.0.0.1:8446", `127.0.0.1:${ports.admin}`);
}
