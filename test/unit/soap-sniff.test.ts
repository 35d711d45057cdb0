import { describe, expect, it } from "vitest";
import { peek, sniffSoap } from "../../src/relay/soap-sniff.ts";

const SOAP12 = "http://www.w3.org/2003/05/soap-envelope";
const SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/";

function envelope(ns: string, header = ""): Buffer {
  return Buffer.from(
    `<?xml version="1.0"?><S:Envelope xmlns:S="${ns}" xmlns:wsa="http://www.w3.org/2005/08/addressing">` +
      `<S:Header>${header}</S:Header><S:Body><x/></S:Body></S:Envelope>`,
  );
}

async function* chunks(...parts: (string | Buffer)[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield Buffer.from(p);
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

describe("SOAP sniffing", () => {
  it("takes the version from the envelope's namespace, whatever the content type claims", () => {
    expect(sniffSoap(envelope(SOAP12), "text/xml", undefined).version).toBe("1.2");
    expect(sniffSoap(envelope(SOAP11), "application/soap+xml", undefined).version).toBe("1.1");
    // No envelope in the first bytes: the content type decides.
    expect(sniffSoap(Buffer.from("--boundary\r\n"), "application/soap+xml", undefined).version).toBe("1.2");
  });

  it("reads the action from wsa:Action first, then the media-type parameter, then SOAPAction", () => {
    const withAction = envelope(SOAP12, "<wsa:Action>urn:hl7-org:v3:PRPA_IN201305UV02</wsa:Action>");
    expect(sniffSoap(withAction, 'application/soap+xml; action="urn:other"', '"urn:third"').action).toBe(
      "urn:hl7-org:v3:PRPA_IN201305UV02",
    );
    expect(
      sniffSoap(envelope(SOAP12), 'application/soap+xml; action="urn:param"', '"urn:third"').action,
    ).toBe("urn:param");
    expect(sniffSoap(envelope(SOAP11), "text/xml", '"urn:soapaction"').action).toBe("urn:soapaction");
    expect(sniffSoap(envelope(SOAP11), "text/xml", undefined).action).toBeUndefined();
  });

  it("reads the MessageID, and the root part of an MTOM request", () => {
    const mtom = Buffer.concat([
      Buffer.from('--uuid:1\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\n\r\n'),
      envelope(
        SOAP12,
        "<wsa:Action S:mustUnderstand='1'> urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b </wsa:Action>" +
          "<wsa:MessageID>urn:uuid:42</wsa:MessageID>",
      ),
      Buffer.from("\r\n--uuid:1\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7"),
    ]);
    const info = sniffSoap(mtom, 'multipart/related; type="application/xop+xml"', undefined);
    expect(info).toEqual({
      version: "1.2",
      action: "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
      messageId: "urn:uuid:42",
    });
  });

  it("never throws on bytes that are not UTF-8", () => {
    const bytes = Buffer.concat([Buffer.from([0xff, 0xfe, 0xc3, 0x28]), envelope(SOAP12)]);
    expect(sniffSoap(bytes, undefined, undefined).version).toBe("1.2");
  });

  it("peeks at most what it needs and then yields the same bytes, in order, once", async () => {
    let pulled = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 10; i++) {
        pulled++;
        yield Buffer.alloc(1000, 97 + i);
      }
    }
    const { head, body } = await peek(source(), 2500);
    expect(head.length).toBe(3000);
    expect(pulled).toBe(3);
    const all = await collect(body);
    expect(all.length).toBe(10_000);
    expect(all.subarray(0, 1000).every((b) => b === 97)).toBe(true);
    expect(all.subarray(9000).every((b) => b === 106)).toBe(true);
  });

  it("peeks a body shorter than the limit whole", async () => {
    const { head, body } = await peek(chunks("<a/>", "<b/>"), 64 * 1024);
    expect(head.toString()).toBe("<a/><b/>");
    expect((await collect(body)).toString()).toBe("<a/><b/>");
  });
});
