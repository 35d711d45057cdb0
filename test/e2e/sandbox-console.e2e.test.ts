/**
 * The sandbox console in a real browser (Debian's Chromium driven by playwright-core): a backend
 * starts CIBA logins over gRPC and a person answers them by clicking the virtual e-CPS phone; relays
 * show up in the timeline with their SOAP bodies; a fault switch makes the next relay fail with its
 * documented code; the code flow's PSC-like login page signs a professional in; axe-core finds no
 * serious or critical violation. The screenshots of docs/start/sandbox-console.md are taken here.
 *
 * Chromium missing: the file is skipped with a banner, and fails under EPROXY_REQUIRE_SERVERS=1 (CI).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { ConnectError } from "@connectrpc/connect";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Channel, CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { type SandboxCli, startSandboxCli } from "../support/sandbox-cli.ts";

const CHROMIUM = [process.env.EPROXY_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find(
  (p): p is string => !!p && existsSync(p),
);
const required = process.env.EPROXY_REQUIRE_SERVERS === "1";
if (!CHROMIUM && !required) {
  const bar = "!".repeat(78);
  process.stderr.write(
    `\n${bar}\n!! sandbox console browser tests SKIPPED: no Chromium (apt-get install chromium)\n${bar}\n\n`,
  );
}

describe("sandbox console prerequisites", () => {
  // In CI a missing browser is a failure, not a silent skip.
  it.runIf(required)("has Chromium installed (Debian's chromium package)", () => {
    expect(CHROMIUM, "no Chromium: apt-get install chromium (or set EPROXY_CHROMIUM)").toBeDefined();
  });
});

/** A busy two-core machine: give the page and the stores time. */
const POLL = { timeout: 15_000 };
const DOCTOR = "899700218896";
const PHARMACIST = "899700366240";
const NURSE = "899700412375";
/**
 * Where the screenshots go: docs/images (the console page's figures) only when asked with
 * EPROXY_UPDATE_SCREENSHOTS=1, so that a test run leaves the working tree as it found it.
 */
const IMAGES =
  process.env.EPROXY_UPDATE_SCREENSHOTS === "1"
    ? path.resolve("docs/images")
    : mkdtempSync(path.join(tmpdir(), "eproxy-console-shots-"));
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** Serious and critical axe-core violations of the page as it is. */
async function axeViolations(page: Page): Promise<string[]> {
  // Page code as strings: this project's TypeScript has no DOM library.
  if (!(await page.evaluate("'axe' in window"))) await page.addScriptTag({ content: AXE });
  const result = (await page.evaluate('axe.run(document, { resultTypes: ["violations"] })')) as {
    violations: Array<{ id: string; impact: string; help: string; nodes: Array<{ target: string[] }> }>;
  };
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}

describe.runIf(CHROMIUM)("the sandbox console in Chromium", () => {
  let sb: SandboxCli;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let consoleUrl: string;
  let sessionToken = "";
  const pageErrors: string[] = [];

  beforeAll(async () => {
    // Nothing approves on its own: the clicks do.
    sb = await startSandboxCli(["--approve-after-ms", "600000"]);
    consoleUrl = sb.line(/^Sandbox console .*: open (http:\/\/localhost:\d+\/) in a browser$/m);
    browser = await chromium.launch({ executablePath: CHROMIUM as string, args: ["--no-sandbox"] });
    // bypassCSP: the console's policy refuses inline scripts, and axe-core is injected as one.
    context = await browser.newContext({
      locale: "en-GB",
      viewport: { width: 1280, height: 900 },
      ignoreHTTPSErrors: true,
      bypassCSP: true,
    });
    page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(consoleUrl);
    await page.waitForSelector("body[data-ready=true]");
    await page.waitForSelector("#conn[data-state=on]");
    mkdirSync(IMAGES, { recursive: true });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await sb?.stop();
  });

  const stateNow = async () =>
    (await (await fetch(`${consoleUrl}api/state`)).json()) as {
      faults: Record<string, boolean>;
      settings: { autoApproveMs: number | null };
    };
  const faultsNow = async () => (await stateNow()).faults;
  const phoneOf = (nationalId: string) => page.locator(`#pro-${nationalId}`);
  const watch = async (authReqId: string) => {
    let last: CibaStatus | undefined;
    for await (const v of sb.auth.watchCiba({ authReqId })) {
      last = v.status;
      if (v.session?.sessionToken) sessionToken = v.session.sessionToken;
    }
    return last;
  };

  it("shows the push on the professional's phone; Approve → WatchCiba sees APPROVED", async () => {
    // The sandbox started with a 600 s auto-approval: the switch turns it off (pushes wait for a click).
    expect(await page.locator("#auto").isChecked()).toBe(true);
    await page.locator("#auto").uncheck();
    await expect.poll(() => stateNow().then((s) => s.settings.autoApproveMs), POLL).toBeNull();
    const started = await sb.auth.startCiba({
      clientId: "lps-demo",
      nationalId: DOCTOR,
      channel: Channel.MOBILE,
      bindingMessage: "42",
    });
    const push = phoneOf(DOCTOR).locator(".push");
    await push.waitFor();
    await expect.poll(() => push.textContent(), POLL).toContain("lps-demo");
    expect(await push.locator(".code").textContent()).toBe("42");
    expect(await push.textContent()).toContain("MOBILE");
    await page.locator("#phone").screenshot({ path: path.join(IMAGES, "sandbox-console-phone.png") });
    const watched = watch(started.authReqId);
    await push.getByRole("button", { name: "Approve" }).click();
    expect(await watched).toBe(CibaStatus.APPROVED);
    expect(sessionToken).toMatch(/^eps_/);
    await expect.poll(() => phoneOf(DOCTOR).locator(".push").count(), POLL).toBe(0);
    // The live session appears in the live view.
    await expect
      .poll(() => page.locator("#sessions tbody").textContent(), POLL)
      .toContain("Camille SANDBOX-MEDECIN");
  });

  it("Deny, from the keyboard → WatchCiba sees DENIED", async () => {
    const started = await sb.auth.startCiba({
      clientId: "lps-demo",
      nationalId: PHARMACIST,
      channel: Channel.CARD,
      bindingMessage: "07",
    });
    const deny = phoneOf(PHARMACIST).getByRole("button", { name: "Deny" });
    await deny.waitFor();
    const watched = watch(started.authReqId);
    await deny.focus();
    await page.keyboard.press("Enter");
    expect(await watched).toBe(CibaStatus.DENIED);
  });

  it("shows a relayed exchange in the timeline with its SOAP request and answer", async () => {
    const body = readFileSync(path.join(sb.certsDir, "insi-request.xml"));
    const answered = await sb.relay.forwardSoap({
      sessionToken,
      service: "insi",
      contentType: "application/soap+xml; charset=utf-8",
      body,
    });
    expect(answered.statusCode).toBe(200);
    const send = page.locator('#timeline li[data-type="SEND"]', { hasText: "insi" }).first();
    await send.waitFor({ timeout: 15_000 });
    expect(await send.textContent()).toContain("OK");
    // The token exchange that preceded it (the session's first relay to insi).
    await expect
      .poll(() => send.locator(".exchange-before").textContent(), POLL)
      .toMatch(/API token from the token exchange at .* OK/);
    const details = send.locator("details.call-soap");
    await details.waitFor({ timeout: 15_000 });
    await details.locator("summary").click();
    const [request, answer] = await details.locator("pre").allTextContents();
    // Pretty-printed: one element a line, indented.
    expect(request).toMatch(/\n {6}<insi:NomNaissance>UNIQUE<\/insi:NomNaissance>\n/);
    expect(answer).toContain("<insi:CodeCR>00</insi:CodeCR>");
    // The token exchange before it, as a trace with the authorization server's view.
    const exchange = page.locator('#timeline li[data-type="EXCHANGE"]').first();
    await exchange.waitFor();
    await exchange.locator("details.call-exchange summary").click();
    const form = (await exchange.locator("pre").first().textContent()) ?? "";
    expect(form).toContain("grant_type = urn:ietf:params:oauth:grant-type:token-exchange");
    expect(form).toMatch(/subject_token = … \(\d+ characters, masked\)/);
    await page.locator("#timeline").evaluate((ol: { scrollTop: number }) => {
      ol.scrollTop = 0;
    });
    await page.locator("#live").screenshot({ path: path.join(IMAGES, "sandbox-console-timeline.png") });
  });

  it("a fault switch makes the next relay fail with the documented code (UPSTREAM_BAD_RESPONSE), and recover", async () => {
    const relay = () =>
      sb.relay.forwardSoap({
        sessionToken,
        service: "insi",
        contentType: "application/soap+xml; charset=utf-8",
        body: readFileSync(path.join(sb.certsDir, "insi-request.xml")),
      });
    await page.getByLabel("HTML 502 page (broken load balancer)").check();
    await expect.poll(() => faultsNow().then((f) => f.teleHtml502), POLL).toBe(true);
    const failed = await relay().catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(ConnectError);
    expect((failed as ConnectError).metadata.get("x-eproxy-error")).toBe("UPSTREAM_BAD_RESPONSE");
    const trace = page.locator("#timeline li.bad", { hasText: "UPSTREAM_BAD_RESPONSE" }).first();
    await trace.waitFor({ timeout: 15_000 });
    await page.locator("#faults").screenshot({ path: path.join(IMAGES, "sandbox-console-faults.png") });
    await page.getByLabel("HTML 502 page (broken load balancer)").uncheck();
    await expect.poll(() => faultsNow().then((f) => f.teleHtml502), POLL).toBe(false);
    expect((await relay()).statusCode).toBe(200);
  });

  it("auto-approval switch: a push is approved after N seconds without a click", async () => {
    await page.locator("#autoSec").fill("1");
    await page.locator("#auto").check();
    await expect.poll(() => stateNow().then((s) => s.settings.autoApproveMs), POLL).toBe(1000);
    const started = await sb.auth.startCiba({
      clientId: "lps-demo",
      nationalId: NURSE,
      channel: Channel.MOBILE,
      bindingMessage: "55",
    });
    expect(await watch(started.authReqId)).toBe(CibaStatus.APPROVED);
    await page.locator("#auto").uncheck();
  });

  it("code flow: PSC's login page in the browser chooses the professional", async () => {
    const started = await sb.auth.startCodeFlow({
      clientId: "lps-demo",
      redirectUri: "https://localhost:3000/psc/callback",
    });
    // The backend's own page (nothing listens there in the sandbox): the test plays it.
    let backendUrl = "";
    await context.route("https://localhost:3000/**", (route) => {
      backendUrl = route.request().url();
      return route.fulfill({ status: 200, contentType: "text/plain", body: "backend" });
    });
    const login = await context.newPage();
    await login.goto(started.authorizationUrl);
    await login.waitForSelector("body[data-ready=true]");
    expect(new URL(login.url()).origin).toBe(new URL(consoleUrl).origin);
    expect(await login.locator("#client").textContent()).toBe("lps-demo");
    await login.getByLabel(/Dominique SANDBOX-PHARMACIEN/).check();
    await login.screenshot({ path: path.join(IMAGES, "sandbox-console-login.png") });
    expect(await axeViolations(login)).toEqual([]);
    await login.getByRole("button", { name: "Approve sign-in" }).click();
    await expect.poll(() => backendUrl, { timeout: 15_000 }).toContain("code=");
    const code = new URL(backendUrl).searchParams.get("code") as string;
    const { session } = await sb.auth.codeFlowCallback({ clientId: "lps-demo", code });
    expect(session?.professional?.nationalId).toBe(PHARMACIST);
    await login.close();
  });

  it("has no serious or critical accessibility violation (axe-core), in English and in French", async () => {
    // A push on a phone and an open exchange, so that the dynamic parts are checked too.
    const started = await sb.auth.startCiba({
      clientId: "lps-demo",
      nationalId: NURSE,
      channel: Channel.MOBILE,
      bindingMessage: "12",
      // The nurse has a live session (auto-approval above): ask for a new one, so a push goes out.
      newSession: true,
    });
    await phoneOf(NURSE).locator(".push").waitFor();
    await page.evaluate("document.querySelectorAll('#timeline details').forEach((d) => { d.open = true; })");
    expect(await axeViolations(page)).toEqual([]);
    await page.getByRole("button", { name: "Français" }).click();
    expect(await page.locator("html").getAttribute("lang")).toBe("fr");
    expect(await page.locator("#phone h2").textContent()).toBe("Application e-CPS virtuelle");
    expect(await axeViolations(page)).toEqual([]);
    await page.getByRole("button", { name: "English" }).click();
    await phoneOf(NURSE).getByRole("button", { name: "Let it expire" }).click();
    await expect.poll(() => phoneOf(NURSE).locator(".push.ignored").count(), POLL).toBe(1);
    expect(started.authReqId).toBeTruthy();
    // The check can fail: an image without a text alternative is a critical violation.
    await page.evaluate(
      "document.querySelector('#phone').append(Object.assign(document.createElement('img'), { src: '/favicon.ico' }))",
    );
    expect(await axeViolations(page)).toEqual([expect.stringMatching(/^critical image-alt/)]);
    expect(pageErrors).toEqual([]);
  });
});
