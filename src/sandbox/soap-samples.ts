/**
 * SOAP messages of the teleservice simulators and of the tests, written for eProxy with synthetic
 * identities (not copied from official packages). Only their shape matters: SOAP 1.2 envelopes with
 * WS-Addressing headers, XDS.b bodies, MTOM packaging.
 */
import { randomUUID } from "node:crypto";

export const SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope";
export const WSA_NS = "http://www.w3.org/2005/08/addressing";

/** wsa:Action values used by the simulators. */
export const ACTIONS = {
  insiSearch: "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite",
  iti18: "urn:ihe:iti:2007:RegistryStoredQuery",
  iti41: "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
  iti43: "urn:ihe:iti:2007:RetrieveDocumentSet",
} as const;

function envelope(action: string, body: string, messageId = `urn:uuid:${randomUUID()}`): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<soap:Envelope xmlns:soap="${SOAP12_NS}" xmlns:wsa="${WSA_NS}">` +
    `<soap:Header><wsa:Action soap:mustUnderstand="1">${action}</wsa:Action><wsa:MessageID>${messageId}</wsa:MessageID>` +
    "<wsa:To>https://teleservice.invalid/</wsa:To></soap:Header>" +
    `<soap:Body>${body}</soap:Body></soap:Envelope>`
  );
}

/** An INSi search by identity traits (the family name selects the simulator's answer). */
export function insiSearchRequest(familyName: string, messageId?: string): string {
  return envelope(
    ACTIONS.insiSearch,
    '<insi:RECSOAPIDENTREQ xmlns:insi="urn:eproxy:sim:insi">' +
      `<insi:NomNaissance>${familyName}</insi:NomNaissance><insi:Prenom>SANDRINE</insi:Prenom>` +
      "<insi:Sexe>F</insi:Sexe><insi:DateNaissance>1980-02-29</insi:DateNaissance></insi:RECSOAPIDENTREQ>",
    messageId,
  );
}

/** An INSi answer with its CR code (00 found, 01 unknown, 02 several). */
export function insiSearchResponse(cr: "00" | "01" | "02", familyName: string): string {
  const individu =
    cr === "00"
      ? `<insi:INDIVIDU><insi:MatriculeINS>280022A000123 45</insi:MatriculeINS><insi:NomNaissance>${familyName}</insi:NomNaissance></insi:INDIVIDU>`
      : "";
  return envelope(
    `${ACTIONS.insiSearch}Response`,
    `<insi:RECSOAPIDENTRESP xmlns:insi="urn:eproxy:sim:insi"><insi:CR><insi:CodeCR>${cr}</insi:CodeCR></insi:CR>${individu}</insi:RECSOAPIDENTRESP>`,
  );
}

/** A SOAP 1.2 fault as the INSi service answers it (e.g. the `siram` technical fault). */
export function soap12Fault(subcode: string, reason: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<soap:Envelope xmlns:soap="${SOAP12_NS}" xmlns:siram="urn:eproxy:sim:siram"><soap:Body><soap:Fault>` +
    `<soap:Code><soap:Value>soap:Receiver</soap:Value><soap:Subcode><soap:Value>siram:${subcode}</soap:Value></soap:Subcode></soap:Code>` +
    `<soap:Reason><soap:Text xml:lang="fr">${reason}</soap:Text></soap:Reason></soap:Fault></soap:Body></soap:Envelope>`
  );
}

/** An ITI-18 stored query for a patient's documents. */
export function iti18Request(patientId: string): string {
  return envelope(
    ACTIONS.iti18,
    '<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">' +
      '<query:ResponseOption returnType="LeafClass" returnComposedObjects="true"/>' +
      '<rim:AdhocQuery id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d">' +
      `<rim:Slot name="$XDSDocumentEntryPatientId"><rim:ValueList><rim:Value>'${patientId}^^^&amp;1.2.250.1.213.1.4.8&amp;ISO'</rim:Value></rim:ValueList></rim:Slot>` +
      "</rim:AdhocQuery></query:AdhocQueryRequest>",
  );
}

/** An ITI-18 answer with `n` document entries. */
export function iti18Response(n: number): string {
  const entries = Array.from(
    { length: n },
    (_, i) =>
      `<rim:ExtrinsicObject id="urn:uuid:${randomUUID()}" mimeType="text/xml" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1">` +
      `<rim:Slot name="creationTime"><rim:ValueList><rim:Value>2026111${i % 10}120000</rim:Value></rim:ValueList></rim:Slot>` +
      `<rim:Name><rim:LocalizedString value="Document de synthese ${i + 1}"/></rim:Name></rim:ExtrinsicObject>`,
  ).join("");
  return envelope(
    `${ACTIONS.iti18}Response`,
    '<query:AdhocQueryResponse xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0" ' +
      `status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"><rim:RegistryObjectList>${entries}</rim:RegistryObjectList></query:AdhocQueryResponse>`,
  );
}

/** An XDS RegistryError answer (sent with HTTP 200, as registries do). */
export function registryErrorResponse(code: string, context: string): string {
  return envelope(
    `${ACTIONS.iti18}Response`,
    '<query:AdhocQueryResponse xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" ' +
      'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"><rs:RegistryErrorList>' +
      `<rs:RegistryError errorCode="${code}" codeContext="${context}" severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"/>` +
      "</rs:RegistryErrorList></query:AdhocQueryResponse>",
  );
}

/** The SOAP root part of an ITI-41 provide-and-register, referencing one MTOM attachment. */
export function iti41RootPart(documentCid: string): string {
  return envelope(
    ACTIONS.iti41,
    '<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007" xmlns:xop="http://www.w3.org/2004/08/xop/include">' +
      `<xdsb:Document id="Document01"><xop:Include href="cid:${documentCid}"/></xdsb:Document>` +
      "</xdsb:ProvideAndRegisterDocumentSetRequest>",
  );
}

/** The SOAP root part of an ITI-43 retrieve (the document id encodes the size to return). */
export function iti43Request(sizeBytes: number): string {
  return envelope(
    ACTIONS.iti43,
    '<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007"><xdsb:DocumentRequest>' +
      `<xdsb:RepositoryUniqueId>1.2.250.1.213.1.1.9</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>size-${sizeBytes}</xdsb:DocumentUniqueId>` +
      "</xdsb:DocumentRequest></xdsb:RetrieveDocumentSetRequest>",
  );
}

/** Content-Type of an MTOM message whose root part is SOAP 1.2. */
export function mtomContentType(boundary: string, action: string): string {
  return `multipart/related; type="application/xop+xml"; boundary="${boundary}"; start="<root.message@eproxy>"; start-info="application/soap+xml"; action="${action}"`;
}

/** The MTOM framing around a root part and attachments (head, separators, tail) as strings. */
export function mtomParts(
  boundary: string,
  root: string,
): { head: string; attachmentHead: (cid: string) => string; tail: string } {
  return {
    head:
      `--${boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n` +
      `Content-Transfer-Encoding: binary\r\nContent-ID: <root.message@eproxy>\r\n\r\n${root}\r\n`,
    attachmentHead: (cid) =>
      `--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <${cid}>\r\n\r\n`,
    tail: `\r\n--${boundary}--\r\n`,
  };
}
