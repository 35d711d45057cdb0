/**
 * The audit policy of the production dependency tree (requirement 102-4): a known vulnerability of
 * severity high or critical fails, unless an allow-list entry names its advisory with a reason and
 * an expiry date not yet passed; an expired entry no longer excuses anything. Pure: reads the JSON
 * of `npm audit --omit dev --json` (report version 2) and the allow-list, returns the verdict.
 */

/** One allow-list entry (`.ci/audit-allowlist.json` holds an array of them). */
export interface AllowEntry {
  /** The advisory: a GHSA id (`GHSA-xxxx-xxxx-xxxx`), its URL, or npm's numeric advisory id. */
  advisory: string;
  /** The vulnerable package. */
  package: string;
  /** Why it is acceptable for now (not reachable, no fix yet, ...). */
  reason: string;
  /** Last day (YYYY-MM-DD, UTC) it is allowed. */
  expires: string;
}

/** One vulnerable advisory found in the tree. */
export interface Finding {
  package: string;
  advisory: string;
  title: string;
  severity: string;
  url: string;
  /** Why it does not fail: the allow-list entry's reason and expiry. */
  allowedBy?: { reason: string; expires: string };
}

/** The policy's verdict. */
export interface AuditVerdict {
  /** `unavailable`: the audit could not be run (no advisory data): the tree was NOT audited. */
  status: "pass" | "fail" | "unavailable";
  /** Why the audit is unavailable. */
  unavailable?: string;
  /** Findings that fail the policy (high/critical, not allowed). */
  failing: Finding[];
  /** High/critical findings excused by a live allow-list entry. */
  allowed: Finding[];
  /** Findings below high (reported, not failing). */
  other: Finding[];
  /** Allow-list entries past their expiry, and entries that are malformed. */
  expired: AllowEntry[];
  invalid: string[];
  /** Counts by severity, as npm reports them. */
  counts: Record<string, number>;
}

const FAILING = new Set(["high", "critical"]);
const GHSA = /GHSA-[\w]{4}-[\w]{4}-[\w]{4}/i;

/** Parses and checks the allow-list; malformed entries are reported, never applied. */
export function parseAllowList(json: unknown): { entries: AllowEntry[]; invalid: string[] } {
  const entries: AllowEntry[] = [];
  const invalid: string[] = [];
  if (!Array.isArray(json)) return { entries, invalid: ["the allow-list must be a JSON array"] };
  for (const [i, e] of json.entries()) {
    const o = (e ?? {}) as Record<string, unknown>;
    const missing = ["advisory", "package", "reason", "expires"].filter(
      (k) => typeof o[k] !== "string" || o[k] === "",
    );
    if (missing.length > 0) invalid.push(`entry ${i}: ${missing.join(", ")} missing`);
    else if (
      !/^\d{4}-\d{2}-\d{2}$/.test(o.expires as string) ||
      Number.isNaN(Date.parse(o.expires as string))
    ) {
      invalid.push(`entry ${i}: expires must be a date YYYY-MM-DD`);
    } else entries.push(o as unknown as AllowEntry);
  }
  return { entries, invalid };
}

function advisoryKey(s: string): string {
  return (GHSA.exec(s)?.[0] ?? s).toUpperCase();
}

/** The findings of an npm audit report (version 2): one per advisory and package. */
export function findingsOf(report: Record<string, unknown>): Finding[] {
  const vulns = (report.vulnerabilities ?? {}) as Record<string, { via?: unknown[] }>;
  const out = new Map<string, Finding>();
  for (const [name, v] of Object.entries(vulns)) {
    for (const via of v.via ?? []) {
      // A string `via` is another vulnerable package (reported under its own name).
      if (typeof via !== "object" || via === null) continue;
      const a = via as { source?: number; name?: string; title?: string; url?: string; severity?: string };
      const pkg = a.name ?? name;
      const advisory = a.url && GHSA.test(a.url) ? advisoryKey(a.url) : String(a.source ?? a.url ?? "?");
      out.set(`${pkg} ${advisory}`, {
        package: pkg,
        advisory,
        title: a.title ?? "",
        severity: a.severity ?? "unknown",
        url: a.url ?? "",
      });
    }
  }
  return [...out.values()];
}

/** Applies the policy to `npm audit --json`'s output (parsed, or the text when it is not JSON). */
export function evaluateAudit(report: unknown, allowList: unknown, today: Date): AuditVerdict {
  const { entries, invalid } = parseAllowList(allowList);
  const day = today.toISOString().slice(0, 10);
  const live = entries.filter((e) => e.expires >= day);
  const expired = entries.filter((e) => e.expires < day);
  const base = { failing: [], allowed: [], other: [], expired, invalid, counts: {} };
  const r = (report ?? {}) as Record<string, unknown>;
  if (typeof report !== "object" || report === null || !("vulnerabilities" in r)) {
    // npm prints `{ "message": ..., "statusCode": ... }` when the registry's audit endpoint fails.
    const why =
      typeof r.message === "string"
        ? r.message
        : typeof (r.error as { summary?: string } | undefined)?.summary === "string"
          ? String((r.error as { summary: string }).summary)
          : "npm audit gave no report";
    return { status: "unavailable", unavailable: why, ...base };
  }
  const findings = findingsOf(r);
  const failing: Finding[] = [];
  const allowed: Finding[] = [];
  const other: Finding[] = [];
  for (const f of findings) {
    if (!FAILING.has(f.severity)) {
      other.push(f);
      continue;
    }
    const entry = live.find(
      (e) => e.package === f.package && advisoryKey(e.advisory) === advisoryKey(f.advisory),
    );
    if (entry) allowed.push({ ...f, allowedBy: { reason: entry.reason, expires: entry.expires } });
    else failing.push(f);
  }
  const counts = ((r.metadata as { vulnerabilities?: Record<string, number> } | undefined)?.vulnerabilities ??
    {}) as Record<string, number>;
  return {
    status: failing.length > 0 || invalid.length > 0 ? "fail" : "pass",
    failing,
    allowed,
    other,
    expired,
    invalid,
    counts,
  };
}

/** The verdict in words, one line per finding. */
export function formatVerdict(v: AuditVerdict): string {
  const line = (f: Finding) => `  ${f.severity.padEnd(8)} ${f.package}  ${f.advisory}  ${f.title}`;
  const out: string[] = [];
  if (v.status === "unavailable") {
    out.push(
      "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
      "!! AUDIT UNAVAILABLE: the production dependencies were NOT checked for known",
      "!! vulnerabilities. npm audit needs the registry's advisory endpoint",
      `!! (POST /-/npm/v1/security/advisories/bulk): ${v.unavailable}`,
      "!! Run `npm run audit:prod` where the registry is reachable (see docs/dev/dependencies.md).",
      "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    );
  } else {
    const c = v.counts;
    out.push(
      `npm audit (production tree): ${c.critical ?? 0} critical, ${c.high ?? 0} high, ${c.moderate ?? 0} moderate, ${c.low ?? 0} low`,
    );
    if (v.failing.length > 0)
      out.push("FAILING (high/critical, not in the allow-list):", ...v.failing.map(line));
    if (v.allowed.length > 0) {
      out.push(
        "allowed (allow-list):",
        ...v.allowed.map((f) => `${line(f)}  until ${f.allowedBy?.expires}: ${f.allowedBy?.reason}`),
      );
    }
    if (v.other.length > 0) out.push("below the policy's threshold (reported):", ...v.other.map(line));
  }
  for (const e of v.expired) {
    out.push(`allow-list entry expired on ${e.expires}: ${e.package} ${e.advisory} (no longer excuses it)`);
  }
  for (const i of v.invalid) out.push(`allow-list: ${i}`);
  out.push(
    v.status === "pass"
      ? "audit policy: PASS"
      : v.status === "fail"
        ? "audit policy: FAIL"
        : "audit policy: NOT RUN (unavailable)",
  );
  return `${out.join("\n")}\n`;
}
