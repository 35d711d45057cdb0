/**
 * `eproxy conformity`: rehearses the agency's conformity test against a running eProxy (the
 * sandbox, a staging deployment, or one wired to the agency's test platform) and prints a report.
 * Exit status: 0 every step passed (warnings allowed), 1 a step failed, 2 usage error.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from "jose";
import { Agent, request } from "undici";
import { ConfigError, processEnv } from "../config.ts";
import { type ConformityHttp, type ConformityReport, runScenario, type SignatureCheck } from "./scenario.ts";

type Out = { write(s: string): unknown };

function positiveInt(name: string, v: string | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0 || n > max)
    throw new ConfigError(`--${name}: a number from 1 to ${max}: ${v}`);
  return n;
}

function readOption(name: string, file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, "utf8");
  } catch {
    throw new ConfigError(`--${name} ${file}: cannot be read`);
  }
}

/** The HTTP client of the run: one undici Agent (mTLS when a certificate is given). */
function createHttp(base: URL, agent: Agent, apiKey: string | undefined, timeoutMs: number): ConformityHttp {
  return {
    async request(method, path, init = {}) {
      const r = await request(new URL(path, base), {
        method: method as "GET",
        dispatcher: agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        headers: {
          accept: "application/json",
          ...(apiKey ? { "x-eproxy-api-key": apiKey } : {}),
          ...(init.json !== undefined ? { "content-type": "application/json" } : {}),
          ...init.headers,
        },
        ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}),
      });
      return {
        status: r.statusCode,
        headers: r.headers as Record<string, string | string[] | undefined>,
        text: await r.body.text(),
      };
    },
  };
}

/** Verifies the mock's signature: a compact JWS, by a key of the set, whose payload is the data sent. */
export function jwsSignatureCheck(keys: () => Promise<JSONWebKeySet>): SignatureCheck {
  return async (signature, data) => {
    const set = createLocalJWKSet(await keys());
    const { payload, protectedHeader } = await compactVerify(signature, set);
    let signed: unknown;
    try {
      signed = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      throw new Error("the signed payload is not JSON");
    }
    const differs = Object.entries(data).filter(([k, v]) => (signed as Record<string, unknown>)?.[k] !== v);
    if (differs.length > 0) {
      throw new Error(
        `the signed payload differs from the session data (${differs.map(([k]) => k).join(", ")})`,
      );
    }
    return `${protectedHeader.alg} JWS by key ${protectedHeader.kid ?? "(no kid)"} over the session data`;
  };
}

/** The report as an aligned table with a closing line. */
export function formatReport(report: ConformityReport): string {
  const rows = [
    ...report.steps.map((s) => ({ check: s.step, verdict: s.verdict, detail: s.detail })),
    ...report.traces.map((t) => ({
      check: `  ${t.trace} trace`,
      verdict: t.ok ? "ok" : "fail",
      detail: t.detail,
    })),
  ];
  const w = Math.max(4, ...rows.map((r) => r.check.length));
  const line = (r: { check: string; verdict: string; detail: string }) =>
    `${r.check.padEnd(w)}  ${r.verdict.toUpperCase().padEnd(6)}  ${r.detail}`.trimEnd();
  const failed = report.steps.filter((s) => s.verdict === "fail").map((s) => s.step);
  return [
    line({ check: "STEP", verdict: "RESULT", detail: "DETAIL" }),
    ...rows.map(line),
    "",
    `window ${report.window.start} .. ${report.window.end}`,
    report.ok ? "conformity scenario PASSED" : `conformity scenario FAILED (${failed.join(", ")})`,
    "",
  ].join("\n");
}

/** Runs `eproxy conformity`; resolves with the exit status. */
export async function runConformity(argv: string[], out: Out, err: Out = process.stderr): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: "string" },
      "client-id": { type: "string" },
      "national-id": { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "api-key-file": { type: "string" },
      service: { type: "string" },
      path: { type: "string" },
      "jwks-url": { type: "string" },
      "jwks-ca": { type: "string" },
      "jwks-file": { type: "string" },
      channel: { type: "string" },
      "binding-message": { type: "string" },
      "timeout-ms": { type: "string" },
      "traces-wait-ms": { type: "string" },
      json: { type: "boolean" },
    },
  });
  for (const required of ["url", "client-id", "national-id"] as const) {
    if (!values[required]) throw new ConfigError(`--${required} is required (eproxy conformity --help)`);
  }
  let base: URL;
  try {
    base = new URL(values.url as string);
  } catch {
    throw new ConfigError(`--url: not a URL: ${values.url}`);
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new ConfigError("--cert and --key go together");
  }
  const channel = values.channel ?? "MOBILE";
  if (channel !== "MOBILE" && channel !== "CARD") throw new ConfigError("--channel: MOBILE or CARD");
  if (values["binding-message"] !== undefined && !/^\d{2}$/.test(values["binding-message"])) {
    throw new ConfigError("--binding-message: two digits");
  }
  if (values["jwks-url"] && values["jwks-file"]) throw new ConfigError("--jwks-url or --jwks-file, not both");
  const timeoutMs = positiveInt("timeout-ms", values["timeout-ms"], 180_000, 600_000);
  const tracesWaitMs = positiveInt("traces-wait-ms", values["traces-wait-ms"], 15_000, 600_000);
  const ca = readOption("ca", values.ca);
  const cert = readOption("cert", values.cert);
  const key = readOption("key", values.key);
  const apiKey = (readOption("api-key-file", values["api-key-file"]) ?? processEnv().EPROXY_API_KEY)?.trim();
  if (!cert && !apiKey) {
    throw new ConfigError("eProxy needs the client's credentials: --cert and --key, or --api-key-file");
  }
  const jwksCa = readOption("jwks-ca", values["jwks-ca"]) ?? ca;
  const jwksFile = readOption("jwks-file", values["jwks-file"]);

  const tlsOf = (caPem: string | undefined) => ({
    ...(caPem ? { ca: caPem } : {}),
    ...(cert && key ? { cert, key } : {}),
  });
  const agent = new Agent({ connect: tlsOf(ca), connectTimeout: Math.min(timeoutMs, 10_000) });
  const jwksAgent = values["jwks-url"] ? new Agent({ connect: tlsOf(jwksCa) }) : undefined;
  const keys = async (): Promise<JSONWebKeySet> => {
    if (jwksFile !== undefined) return JSON.parse(jwksFile) as JSONWebKeySet;
    const r = await request(values["jwks-url"] as string, {
      dispatcher: jwksAgent as Agent,
      headersTimeout: timeoutMs,
    });
    if (r.statusCode !== 200) {
      await r.body.dump();
      throw new Error(`the JWKS answered HTTP ${r.statusCode}`);
    }
    return (await r.body.json()) as JSONWebKeySet;
  };
  try {
    const report = await runScenario(createHttp(base, agent, apiKey, timeoutMs), {
      clientId: values["client-id"] as string,
      nationalId: values["national-id"] as string,
      service: values.service ?? "signsessiondata",
      path: values.path ?? "apipsc/signsessiondata",
      channel,
      ...(values["binding-message"] ? { bindingMessage: values["binding-message"] } : {}),
      ...(jwksFile !== undefined || values["jwks-url"] ? { verifySignature: jwsSignatureCheck(keys) } : {}),
      tracesWaitMs,
      progress: (l) => err.write(`conformity: ${l}\n`),
    });
    out.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return report.ok ? 0 : 1;
  } catch (e) {
    // eProxy unreachable, TLS refused: a failed run, said in one line.
    const cause =
      e instanceof Error
        ? `${e.message}${(e as { code?: string }).code ? ` (${(e as { code?: string }).code})` : ""}`
        : String(e);
    const report = { ok: false, error: `cannot run the scenario against ${base.origin}: ${cause}` };
    out.write(
      values.json ? `${JSON.stringify(report, null, 2)}\n` : `conformity scenario FAILED: ${report.error}\n`,
    );
    return 1;
  } finally {
    await agent.close();
    await jwksAgent?.close();
  }
}
