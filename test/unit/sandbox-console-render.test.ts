/** How the sandbox console renders bodies: XML indented, MTOM split, secrets masked, binary summarised. */
import { describe, expect, it } from "vitest";
import { prettyXml, renderBody } from "../../src/sandbox/console/observe.ts";

describe("sandbox console bodies", () => {
  it("indents XML, one element a line, text and CDATA kept as they are", () => {
    const xml =
      '<?xml version="1.0"?><s:Envelope xmlns:s="urn:s"><s:Body><a:X xmlns:a="urn:a"><a:N>DUPONT &amp; fils</a:N><a:E/><a:C><![CDATA[<b>1</b>]]></a:C></a:X></s:Body></s:Envelope>';
    expect(prettyXml(xml)).toBe(
      [
        '<?xml version="1.0"?>',
        '<s:Envelope xmlns:s="urn:s">',
        "  <s:Body>",
        '    <a:X xmlns:a="urn:a">',
        "      <a:N>DUPONT &amp; fils</a:N>",
        "      <a:E/>",
        "      <a:C><![CDATA[<b>1</b>]]></a:C>",
        "    </a:X>",
        "  </s:Body>",
        "</s:Envelope>",
      ].join("\n"),
    );
  });

  it("masks tokens and secrets in forms and JSON", () => {
    const form = renderBody(
      Buffer.from("grant_type=x&subject_token=abcdef&scope=insi"),
      "application/x-www-form-urlencoded",
    );
    expect(form).toContain("subject_token = … (6 characters, masked)");
    expect(form).not.toContain("abcdef");
    expect(form).toContain("scope = insi");
    const json = renderBody(Buffer.from('{"access_token":"secret","expires_in":3600}'), "application/json");
    expect(json).not.toContain("secret");
    expect(json).toContain('"expires_in": 3600');
  });

  it("shows a large body by its beginning", () => {
    const big = Buffer.from(`<a>${"<b>x</b>".repeat(100_000)}</a>`);
    const text = renderBody(big, "application/soap+xml");
    expect(text.length).toBeLessThan(400 * 1024);
    expect(text).toMatch(/^<a>\n {2}<b>x<\/b>\n/);
    expect(text).toMatch(/… \(\d+ more bytes\)$/);
  });

  it("splits MTOM parts and summarises binary attachments", () => {
    const body = Buffer.concat([
      Buffer.from(
        "--B\r\nContent-Type: application/xop+xml\r\n\r\n<e><f>1</f></e>\r\n--B\r\nContent-Type: application/octet-stream\r\n\r\n",
      ),
      Buffer.from([0, 1, 2, 3, 0, 0, 0, 7]),
      Buffer.from("\r\n--B--\r\n"),
    ]);
    const text = renderBody(body, 'multipart/related; boundary="B"; type="application/xop+xml"');
    expect(text).toContain("--- part 1 (application/xop+xml)\n<e>\n  <f>1</f>\n</e>");
    expect(text).toContain("--- part 2 (application/octet-stream)\n[8 bytes of application/octet-stream]");
  });
});
