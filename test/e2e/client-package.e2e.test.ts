/**
 * The packed @eproxy/client from outside the repository: `npm pack`, install the tarball in a fresh
 * project with a stock `tsc --init` tsconfig (NodeNext), compile a program with tsc, and run it
 * against a sandbox started by the CLI. It completes a CIBA login and both relay paths.
 */
import { execFile } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { type SandboxCli, startSandboxCli } from "../support/sandbox-cli.ts";

const run = promisify(execFile);
const root = path.resolve(".");
const work = mkdtempSync(path.join(tmpdir(), "eproxy-client-pkg-"));
let sandbox: Promise<SandboxCli> | undefined;

afterAll(async () => {
  await sandbox?.then(
    (sb) => sb.stop(),
    () => {},
  );
  rmSync(work, { recursive: true, force: true });
});

/** Runs a command; on failure the error names the command and its output. */
async function sh(cmd: string, args: string[], cwd: string): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}:\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
}

describe("@eproxy/client, packed and installed in a fresh NodeNext project", () => {
  // npm pack, npm install and two tsc runs: generous on a busy CI machine.
  it("compiles with stock tsc and completes a CIBA login and a relay against the sandbox", {
    timeout: 300_000,
  }, async () => {
    // Started now, awaited after the build: it comes up while npm and tsc work.
    sandbox = startSandboxCli(["--approve-after-ms", "300"]);
    sandbox.catch(() => {});

    // Pack (prepack builds: buf generate with .js extensions, then tsc to dist/).
    const packDir = path.join(work, "pack");
    mkdirSync(packDir);
    await sh("npm", ["pack", "--silent", "--pack-destination", packDir], path.join(root, "packages/client"));
    const tarball = readdirSync(packDir).find((f) => f.endsWith(".tgz"));
    expect(tarball).toMatch(/^eproxy-client-\d+\.\d+\.\d+\.tgz$/);
    const listing = await sh("tar", ["-tzf", path.join(packDir, tarball as string)], work);
    expect(listing).toContain("package/dist/index.js");
    expect(listing).toContain("package/dist/index.d.ts");
    expect(listing).not.toMatch(/package\/src\//);

    // A fresh project: the tarball, TypeScript and Node's types, a stock tsconfig.
    const app = path.join(work, "app");
    mkdirSync(app);
    writeFileSync(
      path.join(app, "package.json"),
      JSON.stringify({
        name: "integrator-app",
        private: true,
        type: "module",
        dependencies: {
          "@eproxy/client": `file:${path.join(packDir, tarball as string)}`,
          "@connectrpc/connect": "^2.3.0",
          typescript: "5.9.3",
          "@types/node": "24.19.4",
        },
      }),
    );
    await sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--silent"], app);
    const installed = JSON.parse(await sh("npm", ["ls", "--json", "--omit=dev", "--all"], app)) as {
      dependencies: Record<string, { dependencies?: Record<string, unknown> }>;
    };
    // The client brings only the Connect/protobuf runtime.
    expect(Object.keys(installed.dependencies["@eproxy/client"]?.dependencies ?? {}).sort()).toEqual([
      "@bufbuild/protobuf",
      "@connectrpc/connect",
      "@connectrpc/connect-node",
    ]);
    await sh(path.join(app, "node_modules/.bin/tsc"), ["--init"], app);
    // The one change `tsc --init`'s own comment prescribes for Node.js ("For nodejs: types: [node]").
    const tsconfig = readFileSync(path.join(app, "tsconfig.json"), "utf8");
    expect(tsconfig).toContain('"module": "nodenext"');
    writeFileSync(path.join(app, "tsconfig.json"), tsconfig.replace('"types": [],', '"types": ["node"],'));
    copyFileSync(path.join(root, "packages/client/test/consumer.ts"), path.join(app, "consumer.ts"));
    copyFileSync(path.join(root, "packages/client/test/twice.ts"), path.join(app, "twice.ts"));
    await sh(path.join(app, "node_modules/.bin/tsc"), ["-p", "."], app);
    // Also with the package's declarations checked (the stock tsconfig skips library checks).
    await sh(
      path.join(app, "node_modules/.bin/tsc"),
      ["-p", ".", "--noEmit", "--skipLibCheck", "false"],
      app,
    );

    const { url, certsDir } = await sandbox;
    const out = await sh(
      process.execPath,
      ["consumer.js", url, certsDir, "899700218896", "899700366240"],
      app,
    );
    const seen = JSON.parse(out.trim().split("\n").at(-1) as string);
    expect(seen.statuses.at(-1)).toBe("APPROVED/APPROVED");
    expect(seen.familyName).toBe("SANDBOX-MEDECIN");
    expect(seen.tokenPrefix).toBe("eps_");
    expect(seen.forwardSoap).toEqual({ statusCode: 200, codeCr: "00" });
    expect(seen.send).toEqual({ status: 200, codeCr: "00" });
    expect(seen.getSession).toBe("899700218896");
    expect(seen.badSession).toEqual({
      code: "SESSION_INVALID",
      isSessionInvalid: true,
      errorInfoReason: "SESSION_INVALID",
      errorInfoDomain: "eproxy",
    });
    // eProxy's refusals are thrown as EproxyRelayError; the teleservice's own 500 fault is returned.
    expect(seen.badSend).toEqual({ code: "SESSION_INVALID", httpStatus: 401, isSessionInvalid: true });
    expect(seen.badForwardSoap).toEqual({ code: "SESSION_INVALID", isSessionInvalid: true });
    expect(seen.teleserviceFault).toEqual({ status: 500, fault: true });
    expect(seen.aborted).toBe(1); // Code.Canceled

    // The 20-line program, twice in a row for the professional the consumer just logged in: each run
    // meets the live session (CibaSessionReusedError, no push), asks for a new one, then relays.
    for (const round of [1, 2]) {
      const twice = JSON.parse(
        (await sh(process.execPath, ["twice.js", url, certsDir, "899700218896"], app)).trim(),
      );
      expect(twice.reused, `run ${round}`).toMatch(/newSession: true/);
      expect(twice.insi, `run ${round}`).toEqual([200, "00"]);
      expect(twice.refused, `run ${round}`).toEqual(["SESSION_INVALID", 401]);
    }
  });

  it("is usable from a CommonJS TypeScript project on Node >= 22.12 (require of an ES module)", {
    timeout: 120_000,
  }, async () => {
    const app = path.join(work, "app");
    const cjs = path.join(work, "cjs");
    mkdirSync(cjs);
    // A stock `npm init` project (CommonJS), with the packages installed by the previous test.
    writeFileSync(path.join(cjs, "package.json"), JSON.stringify({ name: "cjs-app", version: "1.0.0" }));
    symlinkSync(path.join(app, "node_modules"), path.join(cjs, "node_modules"), "dir");
    const tsc = path.join(app, "node_modules/.bin/tsc");
    await sh(tsc, ["--init"], cjs);
    const tsconfig = readFileSync(path.join(cjs, "tsconfig.json"), "utf8");
    writeFileSync(path.join(cjs, "tsconfig.json"), tsconfig.replace('"types": [],', '"types": ["node"],'));
    writeFileSync(
      path.join(cjs, "app.ts"),
      [
        'import eproxy = require("@eproxy/client");',
        "",
        'const e = new eproxy.EproxyRelayError({ code: "SESSION_INVALID", message: "", via: "send" });',
        "console.log(",
        "  JSON.stringify({",
        "    create: typeof eproxy.createEproxyClient,",
        "    reusedError: typeof eproxy.CibaSessionReusedError,",
        "    code: eproxy.eproxyErrorCode(e),",
        "  }),",
        ");",
        "",
      ].join("\n"),
    );
    await sh(tsc, ["-p", "."], cjs);
    expect(readFileSync(path.join(cjs, "app.js"), "utf8")).toContain('require("@eproxy/client")');
    const out = JSON.parse((await sh(process.execPath, ["app.js"], cjs)).trim());
    expect(out).toEqual({ create: "function", reusedError: "function", code: "SESSION_INVALID" });
  });
});
