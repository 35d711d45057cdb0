import { ERROR_CODES, type ErrorCode, toEproxyError } from "../errors.ts";

/** SOAP envelope version of a request: decides the shape of our own faults. */
export type SoapVersion = "1.1" | "1.2";

/** A rendered SOAP fault ready to be written. */
export interface SoapFault {
  /** HTTP status for this fault. */
  status: number;
  /** Content-Type matching the SOAP version. */
  contentType: string;
  /** Serialized envelope. */
  body: string;
}

const SUBCODES: Record<ErrorCode, string> = {
  INVALID_ARGUMENT: "InvalidRequest",
  UNAUTHENTICATED: "CallerNotAuthenticated",
  SESSION_INVALID: "SessionInvalid",
  REAUTHENTICATION_REQUIRED: "ReauthenticationRequired",
  PERMISSION_DENIED: "ServiceNotAllowed",
  AUTHENTICATION_DENIED: "AuthenticationDenied",
  AUTHENTICATION_EXPIRED: "AuthenticationExpired",
  NOT_FOUND: "UnknownService",
  METHOD_NOT_ALLOWED: "MethodNotAllowed",
  CONFLICT: "Conflict",
  PAYLOAD_TOO_LARGE: "BodyTooLarge",
  TOO_MANY_REQUESTS: "TooManyRequests",
  NOT_IMPLEMENTED: "NotImplemented",
  PSC_UNAVAILABLE: "PscUnavailable",
  STORE_UNAVAILABLE: "StoreUnavailable",
  UPSTREAM_UNAVAILABLE: "UpstreamUnavailable",
  TOKEN_EXCHANGE_UNAVAILABLE: "TokenExchangeUnavailable",
  UPSTREAM_TIMEOUT: "UpstreamTimeout",
  UPSTREAM_BAD_RESPONSE: "UpstreamBadResponse",
  UNAVAILABLE: "Unavailable",
  INTERNAL: "InternalError",
};

const EPROXY_NS = "urn:eproxy:fault";

function escapeXml(s: string): string {
  return s.replace(
    /[<>&"']/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c,
  );
}

/**
 * Renders an error as a SOAP fault in the request's SOAP version: 1.2 with Code/Subcode and a
 * French Reason, 1.1 with faultcode Client/Server. The reason is the code's fixed French text,
 * never the cause.
 */
export function toSoapFault(err: unknown, version: SoapVersion): SoapFault {
  const e = toEproxyError(err);
  const def = ERROR_CODES[e.code];
  const reason = escapeXml(def.fr);
  const sub = SUBCODES[e.code];
  if (version === "1.2") {
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>' +
      `<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:ep="${EPROXY_NS}">` +
      "<env:Body><env:Fault>" +
      `<env:Code><env:Value>env:${def.side}</env:Value><env:Subcode><env:Value>ep:${sub}</env:Value></env:Subcode></env:Code>` +
      `<env:Reason><env:Text xml:lang="fr">${reason}</env:Text></env:Reason>` +
      "</env:Fault></env:Body></env:Envelope>";
    return { status: def.status, contentType: "application/soap+xml; charset=utf-8", body };
  }
  const faultcode = def.side === "Sender" ? "Client" : "Server";
  const body =
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ep="${EPROXY_NS}">` +
    "<soap:Body><soap:Fault>" +
    `<faultcode>soap:${faultcode}</faultcode>` +
    `<faultstring xml:lang="fr">${reason}</faultstring>` +
    `<detail><ep:code>${sub}</ep:code></detail>` +
    "</soap:Fault></soap:Body></soap:Envelope>";
  return { status: def.status, contentType: "text/xml; charset=utf-8", body };
}

/** Guesses the SOAP version from a Content-Type (SOAP 1.2 is `application/soap+xml` or MTOM with that start-info). */
export function soapVersionOf(contentType: string | undefined): SoapVersion {
  const ct = (contentType ?? "").toLowerCase();
  if (ct.startsWith("application/soap+xml")) return "1.2";
  if (ct.startsWith("multipart/related") && ct.includes("application/soap+xml")) return "1.2";
  return "1.1";
}
