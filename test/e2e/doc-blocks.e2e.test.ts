/**
 * The documentation runs: every block fenced as `bash doctest` in the README and under docs/ is run
 * against a sandbox started by the CLI, page by page in reading order, the blocks of a page in one
 * shell (so a page's variables carry from block to block), and the whole sequence twice in a row.
 * Blocks fenced as `ts doctest` are type-checked (strict, NodeNext, as the client package's README
 * recommends) against @eproxy/client built from packages/client, then run with Node after the page's
 * shell blocks.
 *
 * Before the first run, the three sandbox professionals are signed in the way the sandbox's printed
 * commands do (no `newSession`), so live sessions exist as they do for an integrator who tried those
 * commands first: a page whose CIBA login would be reused without a token fails here, on the first
 * run as on the second.
 */
import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliProcess, startCli } from "../support/cli.ts";
import { docBlocks, type SandboxPorts, withPorts } from "../support/doc-blocks.ts";
import { docFiles } from "../support/docs.ts";

const root = path.resolve(".");
/** Reading order: the quick start, then the getting-started pages, then the guides; then the rest. */
const READING_ORDER = [
  "README.md",
  "docs/start/sandbox.md",
  "docs/start/curl.md",
  "docs/start/typescript.md",
  "docs/guides/ciba.md",
  "docs/guides/code-flow.md",
  "docs/guides/sessions.md",
  "docs/guides/soap-relay.md",
  "docs/guides/errors.md",
  "docs/guides/traces.md",
  "docs/guides/conformity.md",
];
const pages = [
  ...READING_ORDER,
  ...docFiles().filter((f) => !READING_ORDER.includes(f) && f !== "CONTRIBUTING.md"),
].filter((f) => docBlocks(readFileSync(f, "utf8")).length > 0);

const work = mkdtempSync(path.join(tmpdir(), "eproxy-doc-blocks-"));
let sandbox: CliProcess | undefined;
let ports: SandboxPorts;
/** Where the `ts doctest` blocks are written: its node_modules holds the built @eproxy/client. */
const tsDir = path.join(work, "ts");

/**
 * Builds @eproxy/client into a copy of its package (buf generate, then tsc), beside the repository's
 * node_modules, so that a concurrent `npm pack` of packages/client is not disturbed.
 */
async function buildClient(): Promise<void> {
  const build = path.join(work, "client-build");
  const pkg = path.join(build, "packages/client");
  for (const f of ["package.json", "tsconfig.json", "buf.gen.yaml", "src"]) {
    cpSync(path.join(root, "packages/client", f), path.join(pkg, f), {
      recursive: true,
      filter: (src) => !src.includes(`${path.sep}gen`),
    });
  }
  cpSync(path.join(root, "proto"), path.join(build, "proto"), { recursive: true });
  symlinkSync(path.join(root, "node_modules"), path.join(build, "node_modules"));
  const r = await bash(
    `set -e; cd ${JSON.stringify(pkg)} && buf generate --template buf.gen.yaml && tsc -p tsconfig.json`,
  );
  expect(r, `building @eproxy/client failed\n${r.stdout}\n${r.stderr}`).toMatchObject({ code: 0 });
  mkdirSync(path.join(tsDir, "node_modules/@eproxy"), { recursive: true });
  symlinkSync(pkg, path.join(tsDir, "node_modules/@eproxy/client"));
  writeFileSync(path.join(tsDir, "package.json"), '{ "type": "module" }\n');
  // The client package README's recommended settings (what `tsc --init` writes, plus Node's types).
  writeFileSync(
    path.join(tsDir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "nodenext",
        target: "esnext",
        types: ["node"],
        strict: true,
        verbatimModuleSyntax: true,
        skipLibCheck: true,
        noEmit: true,
        allowImportingTsExtensions: true,
      },
      include: ["*.ts"],
    }),
  );
}

/** Runs a bash script in the work directory (where `certs/` is the sandbox's), as a reader would. */
function bash(
  script: string,
  timeoutMs = 120_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "bash",
      ["-c", script],
      {
        cwd: work,
        timeout: timeoutMs,
        maxBuffer: 16 * 1024 * 1024,
        // node_modules/.bin first: `npx buf` and `node` resolve to the repository's pinned ones.
        env: { ...process.env, PATH: `${path.join(root, "node_modules/.bin")}:${process.env.PATH}` },
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  // What the documented blocks use besides Node: said plainly rather than as a failing block.
  const tools = await bash("for t in curl jq base64 sha256sum; do command -v $t >/dev/null || echo $t; done");
  expect(tools.stdout.trim(), "the documentation's examples need these tools (.ci/install-tools.sh jq)").toBe(
    "",
  );
  // The blocks run from the repository's root in the docs: here `certs/` and `node_modules` stand in.
  mkdirSync(path.join(work, "certs"));
  symlinkSync(path.join(root, "node_modules"), path.join(work, "node_modules"));
  // `npx eproxy …` (as the sandbox prints it) runs the repository's CLI, as it does from its root.
  symlinkSync(path.join(root, "bin/eproxy.js"), path.join(work, "eproxy.js"));
  writeFileSync(
    path.join(work, "package.json"),
    JSON.stringify({ name: "eproxy-doc-blocks", private: true, bin: { eproxy: "./eproxy.js" } }),
  );
  // Port 0: the sandbox picks free ports for the proxy, both simulators and the admin listener.
  sandbox = startCli([
    "sandbox",
    "--port",
    "0",
    "--dir",
    path.join(work, "certs"),
    "--approve-after-ms",
    "300",
  ]);
  await Promise.all([sandbox.waitFor(/Ctrl-C stops it/, 60_000), buildClient()]);
  const port = (re: RegExp) => Number(re.exec(sandbox?.stdout() ?? "")?.[1]);
  ports = {
    proxy: port(/sandbox ready on https:\/\/localhost:(\d+)/),
    psc: port(/PSC simulator on https:\/\/localhost:(\d+)/),
    teleservices: port(/Teleservice simulators on https:\/\/localhost:(\d+)/),
    admin: port(/Metrics \(Prometheus\) on http:\/\/127\.0\.0\.1:(\d+)/),
  };
  expect(
    Object.values(ports).every((p) => p > 0),
    sandbox.stdout(),
  ).toBe(true);
  // The sandbox's printed commands, as a new integrator runs them first: live sessions, no newSession.
  const prelude = await bash(
    withPorts(
      `set -euo pipefail
KEY=$(node -p 'require("./certs/sandbox-api-keys.json")["lps-demo"].key')
for id in 899700218896 899700366240 899700412375; do
  curl -sS --fail-with-body --cacert certs/ca.pem -H "x-eproxy-api-key: $KEY" -H 'content-type: application/json' \\
    https://localhost:8443/oauth2/ciba -d "{\\"nationalId\\":\\"$id\\",\\"channel\\":\\"MOBILE\\"}" > "certs/prelude-$id.json" &
done
wait
grep -h -o '"reused":false' certs/prelude-*.json | wc -l | grep -qx 3`,
      ports,
    ),
  );
  expect(prelude, prelude.stderr).toMatchObject({ code: 0 });
}, 240_000);

afterAll(async () => {
  if (sandbox && sandbox.child.exitCode === null) {
    sandbox.child.kill("SIGTERM");
    await sandbox.exited;
  }
  rmSync(work, { recursive: true, force: true });
});

describe("documentation blocks against the sandbox", () => {
  it("finds the quick start and the guides' blocks", () => {
    expect(pages.slice(0, 3)).toEqual(["README.md", "docs/start/sandbox.md", "docs/start/curl.md"]);
    expect(pages).toContain("docs/guides/ciba.md");
    expect(pages).toContain("docs/guides/soap-relay.md");
    expect(pages).toContain("docs/start/typescript.md");
  });

  for (const run of [1, 2]) {
    for (const page of pages) {
      it(`run ${run}: ${page}`, { timeout: 240_000 }, async () => {
        const all = docBlocks(readFileSync(page, "utf8"));
        const blocks = all.filter((b) => b.lang === "bash");
        // One shell per page: `set -e` stops at the first failing command, naming its block.
        const script = [
          "set -euo pipefail",
          ...blocks.map((b) => `echo "::: ${page}:${b.line}" >&2\n${withPorts(b.code, ports)}`),
        ].join("\n");
        const r = await bash(script, 170_000);
        expect(
          r.code,
          `${page} failed (run ${run}); the last ::: line names the block\n${r.stdout}\n${r.stderr}`,
        ).toBe(0);
        for (const b of all.filter((x) => x.lang === "ts")) {
          const name = `${page.replaceAll(/[^\w]/g, "_")}_${b.line}.ts`;
          writeFileSync(path.join(tsDir, name), withPorts(b.code, ports));
          if (run === 1) {
            const checked = await bash(`tsc -p ${JSON.stringify(tsDir)}`);
            expect(
              checked.code,
              `${page}:${b.line} does not compile\n${checked.stdout}${checked.stderr}`,
            ).toBe(0);
          }
          const ran = await bash(`node ${JSON.stringify(path.join(tsDir, name))}`, 170_000);
          expect(ran.code, `${page}:${b.line} failed (run ${run})\n${ran.stdout}\n${ran.stderr}`).toBe(0);
        }
      });
    }
  }
});
