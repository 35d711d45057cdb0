import { describe, expect, it } from "vitest";
import { evaluateAudit, formatVerdict } from "../../scripts/audit-policy.ts";

/** An `npm audit --json` report (version 2) with one advisory on `pkg` of `severity`. */
function report(severity: string, pkg = "undici", ghsa = "GHSA-abcd-efgh-ijkl") {
  return {
    auditReportVersion: 2,
    vulnerabilities: {
      [pkg]: {
        name: pkg,
        severity,
        isDirect: true,
        via: [
          {
            source: 1234567,
            name: pkg,
            dependency: pkg,
            title: "Something bad",
            url: `https://github.com/advisories/${ghsa}`,
            severity,
            range: "<7.31.0",
          },
        ],
        effects: ["@eproxy/client"],
      },
      // A package vulnerable only through another one: `via` names it, no advisory of its own.
      "@eproxy/client": { name: "@eproxy/client", severity, via: [pkg], effects: [] },
    },
    metadata: { vulnerabilities: { info: 0, low: 0, moderate: 0, high: 1, critical: 0, total: 1 } },
  };
}
const today = new Date("2026-12-04T10:00:00Z");
const entry = (expires: string) => ({
  advisory: "GHSA-abcd-efgh-ijkl",
  package: "undici",
  reason: "not reachable from eProxy",
  expires,
});

describe("the production audit policy", () => {
  it("fails on a high or critical advisory of the production tree", () => {
    for (const severity of ["high", "critical"]) {
      const v = evaluateAudit(report(severity), [], today);
      expect(v.status).toBe("fail");
      expect(v.failing).toEqual([
        expect.objectContaining({ package: "undici", advisory: "GHSA-ABCD-EFGH-IJKL" }),
      ]);
      expect(formatVerdict(v)).toMatch(
        /FAILING[\s\S]*undici {2}GHSA-ABCD-EFGH-IJKL[\s\S]*audit policy: FAIL/,
      );
    }
  });

  it("lists moderate and low advisories without failing", () => {
    const v = evaluateAudit(report("moderate"), [], today);
    expect(v.status).toBe("pass");
    expect(v.other).toHaveLength(1);
  });

  it("lets an allow-list entry excuse an advisory until its expiry date, the last day included", () => {
    const v = evaluateAudit(report("high"), [entry("2026-12-04")], today);
    expect(v.status).toBe("pass");
    expect(v.allowed[0]?.allowedBy).toEqual({ reason: "not reachable from eProxy", expires: "2026-12-04" });
    // The advisory's URL or the id in another case name it too.
    expect(
      evaluateAudit(
        report("high"),
        [{ ...entry("2027-01-01"), advisory: "https://github.com/advisories/ghsa-abcd-efgh-ijkl" }],
        today,
      ).status,
    ).toBe("pass");
    // Another package with the same advisory is not excused.
    expect(evaluateAudit(report("high", "pino"), [entry("2027-01-01")], today).status).toBe("fail");
  });

  it("an expired entry excuses nothing and is reported", () => {
    const v = evaluateAudit(report("critical"), [entry("2026-12-03")], today);
    expect(v.status).toBe("fail");
    expect(v.expired).toHaveLength(1);
    expect(formatVerdict(v)).toContain("allow-list entry expired on 2026-12-03: undici GHSA-abcd-efgh-ijkl");
  });

  it("a malformed allow-list (no reason, no date) fails instead of excusing", () => {
    const v = evaluateAudit(
      report("low"),
      [{ advisory: "GHSA-abcd-efgh-ijkl", package: "undici", expires: "soon" }],
      today,
    );
    expect(v.status).toBe("fail");
    expect(v.invalid).toEqual(["entry 0: reason missing"]);
    expect(evaluateAudit(report("low"), [{ ...entry("31/12/2026") }], today).invalid).toEqual([
      "entry 0: expires must be a date YYYY-MM-DD",
    ]);
  });

  it("says loudly that nothing was audited when the registry's advisory endpoint fails", () => {
    const v = evaluateAudit(
      {
        message: "405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk",
        statusCode: 405,
      },
      [],
      today,
    );
    expect(v.status).toBe("unavailable");
    expect(formatVerdict(v)).toMatch(
      /AUDIT UNAVAILABLE: the production dependencies were NOT checked[\s\S]*405 Method Not Allowed/,
    );
  });
});
