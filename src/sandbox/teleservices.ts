/**
 * Teleservice simulators over mTLS: a target authorization server doing RFC 8693 token exchange
 * (validating the PSC subject token by introspection at the PSC simulator, issuing API tokens bound
 * to the client certificate), an INSi service, a DMP registry/repository (ITI-18, ITI-41 MTOM,
 * ITI-43 MTOM), an mTLS-only echo service, the conformity mock of the agency's test platform
 * (`signsessiondata`, behind its own token-exchange realm), and fault switches. Sandbox and tests only.
 */
import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { CompactSign, exportJWK, generateKeyPair } from "jose";
import {
  ACTIONS,
  insiSearchResponse,
  iti18Response,
  mtomContentType,
  mtomParts,
  registryErrorResponse,
  soap12Fault,
} from "./soap-samples.ts";

/** Fault switches of the teleservices (not of the authorization server). */
export interface TeleserviceFaults {
  /** Wait this long before sending response headers. */
  slowHeadersMs: number;
  /** Send half of the response body, then reset the connection. */
  resetMidBody: boolean;
  /** Answer like a broken load balancer: 502 with an HTML page. */
  html502: boolean;
  /** The token endpoint (the authorization server) answers 503 with `Retry-After: 1`. */
  asUnavailable?: boolean;
}

/** Counters and last observations, for tests. */
export interface TeleserviceStats {
  /** Token exchanges performed. */
  exchanges: number;
  /** Requests that reached the token endpoint (performed or not). */
  exchangeRequests?: number;
  /** Teleservice requests received. */
  requests: number;
  /** Headers of the last teleservice request. */
  lastHeaders: Record<string, string | string[] | undefined>;
  /** Headers of the last token-exchange request. */
  lastExchangeHeaders: Record<string, string | string[] | undefined>;
}

/**
 * One request the simulators answered, with both bodies as they crossed the wire (the sandbox
 * console shows them; nothing outside the sandbox ever keeps a body). `response` is what was sent,
 * which is half of it when `resetMidBody` cut the answer.
 */
export interface ObservedCall {
  /** Request path (`/as/token` is the token exchange). */
  path: string;
  /** When the request arrived and how long it took to answer (ms). */
  at: number;
  durationMs: number;
  /** Request headers (as received). */
  headers: Record<string, string | string[] | undefined>;
  request: Buffer;
  /** The answer's status and content type; undefined status when the connection was cut first. */
  status?: number;
  contentType?: string;
  response: Buffer;
  /** The fault switches that applied. */
  faults: TeleserviceFaults;
}

/** A running set of teleservice simulators. */
export interface TeleserviceSimulator {
  /** Base URL (https://localhost:port). */
  url: string;
  /** Token-exchange endpoint. */
  tokenEndpoint: string;
  /** Token-exchange endpoint of the conformity mock's own realm (`signsessiondata`). */
  signSessionDataTokenEndpoint: string;
  /** Base of the conformity mock (`POST {base}/apipsc/signsessiondata`). */
  mockServiceUrl: string;
  /** Public key set of the conformity mock's signatures (JWKS, GET). */
  mockJwksUrl: string;
  faults: TeleserviceFaults;
  stats: TeleserviceStats;
  /** Lifetime of issued API tokens, in seconds (mutable). */
  settings: { apiTokenTtlSeconds: number };
  /** Told every answered request with its bodies (the sandbox console); unset by default. */
  onCall?: (call: ObservedCall) => void;
  reset(): void;
  close(): Promise<void>;
}

/** Realm of the conformity mock at the authorization server (the agency's test platform has its own). */
export const SIGN_SESSION_DATA_REALM = "signsessiondata";

/** The session data the conformity mock signs, in the agency's field names and order. */
export const SESSION_DATA_FIELDS = ["nationalId", "clientID", "proxy_session_id", "session_state"] as const;

interface ApiToken {
  /** `teleservices` (INSi, DMP) or the conformity mock's realm: a token is good in its realm only. */
  realm: string;
  sub: string;
  /** The PSC client the subject token was issued to (introspection `client_id`). */
  pscClientId: string;
  scope: string;
  thumbprint: string;
  expiresAt: number;
}

function thumbprintOf(socket: TLSSocket): string | undefined {
  const cert = socket.getPeerX509Certificate?.();
  return cert ? createHash("sha256").update(cert.raw).digest("base64url") : undefined;
}

/** Bodies read and sent, for `onCall`. */
const received = new WeakMap<IncomingMessage, Buffer>();
const sent = new WeakMap<ServerResponse, { contentType: string; body: Buffer }>();

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  const body = Buffer.concat(chunks);
  received.set(req, body);
  return body;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  const text = JSON.stringify(body);
  sent.set(res, { contentType: "application/json", body: Buffer.from(text) });
  res.end(text);
}

/** Splits a buffered multipart body into parts (headers and bytes). */
export function parseMultipart(body: Buffer, boundary: string): Array<{ headers: string; body: Buffer }> {
  const delim = Buffer.from(`--${boundary}`);
  const parts: Array<{ headers: string; body: Buffer }> = [];
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    const start = pos + delim.length;
    if (body.subarray(start, start + 2).toString() === "--") break;
    const headerEnd = body.indexOf("\r\n\r\n", start);
    const next = body.indexOf(Buffer.concat([Buffer.from("\r\n"), delim]), headerEnd);
    if (headerEnd < 0 || next < 0) throw new Error("malformed multipart body");
    parts.push({
      headers: body.subarray(start + 2, headerEnd).toString(),
      body: body.subarray(headerEnd + 4, next),
    });
    pos = next + 2;
  }
  return parts;
}

function boundaryOf(contentType: string): string | undefined {
  return /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
}

/** Starts the simulators. */
export async function startTeleserviceSimulator(opts: {
  port: number;
  tls: { cert: string; key: string; ca: string };
  /** PSC introspection endpoint and the credentials of this authorization server there. */
  psc: { introspectionEndpoint: string; clientId: string; clientSecret: string; ca: string };
  apiTokenTtlSeconds?: number;
  /** Host name in its URLs (must match the server certificate; default localhost). */
  host?: string;
  /** Address it listens on (default 127.0.0.1; the multi-host rig uses its namespace's). */
  listenAddress?: string;
}): Promise<TeleserviceSimulator> {
  const faults: TeleserviceFaults = { slowHeadersMs: 0, resetMidBody: false, html502: false };
  const stats: TeleserviceStats = { exchanges: 0, requests: 0, lastHeaders: {}, lastExchangeHeaders: {} };
  const settings = { apiTokenTtlSeconds: opts.apiTokenTtlSeconds ?? 3600 };
  const tokens = new Map<string, ApiToken>();
  const pscAgent = new https.Agent({ ca: opts.psc.ca, keepAlive: true });
  // The conformity mock signs with a key of its own, published as a JWKS so a signature can be checked.
  const signing = await generateKeyPair("ES256", { extractable: true });
  const signingKid = `mock-${randomBytes(4).toString("hex")}`;
  const jwks = {
    keys: [{ ...(await exportJWK(signing.publicKey)), kid: signingKid, alg: "ES256", use: "sig" }],
  };

  function introspect(token: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const body = new URLSearchParams({ token, token_type_hint: "access_token" }).toString();
      const req = https.request(
        opts.psc.introspectionEndpoint,
        {
          method: "POST",
          agent: pscAgent,
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            authorization: `Basic ${Buffer.from(`${opts.psc.clientId}:${opts.psc.clientSecret}`).toString("base64")}`,
          },
        },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => {
            text += c;
          });
          res.on("end", () => {
            try {
              resolve(JSON.parse(text));
            } catch (e) {
              reject(e);
            }
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  async function tokenExchange(req: IncomingMessage, res: ServerResponse, realm: string): Promise<void> {
    stats.lastExchangeHeaders = { ...req.headers };
    stats.exchangeRequests = (stats.exchangeRequests ?? 0) + 1;
    if (faults.asUnavailable) {
      await readAll(req);
      res.writeHead(503, { "retry-after": "1", "content-type": "text/html" });
      sent.set(res, { contentType: "text/html", body: Buffer.from("<html><body>maintenance</body></html>") });
      res.end("<html><body>maintenance</body></html>");
      return;
    }
    const form = new URLSearchParams((await readAll(req)).toString());
    if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:token-exchange") {
      return json(res, 400, { error: "unsupported_grant_type" });
    }
    const subject = form.get("subject_token");
    if (!subject || form.get("subject_token_type") !== "urn:ietf:params:oauth:token-type:access_token") {
      return json(res, 400, { error: "invalid_request", error_description: "subject_token missing" });
    }
    const thumbprint = thumbprintOf(req.socket as TLSSocket);
    const info = await introspect(subject);
    const cnf = (info.cnf ?? {}) as Record<string, string>;
    // The PSC token is bound to the client certificate: it must be presented with the same one.
    if (info.active !== true || !thumbprint || (cnf["x5t#S256"] && cnf["x5t#S256"] !== thumbprint)) {
      return json(res, 400, {
        error: "invalid_grant",
        error_description: "subject token inactive or not bound to this certificate",
      });
    }
    stats.exchanges++;
    const token = randomBytes(32).toString("base64url");
    const scope = form.get("scope") ?? "";
    tokens.set(token, {
      realm,
      sub: String(info.sub),
      pscClientId: String(info.client_id ?? ""),
      scope,
      thumbprint,
      expiresAt: Date.now() + settings.apiTokenTtlSeconds * 1000,
    });
    json(res, 200, {
      access_token: token,
      issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
      token_type: "Bearer",
      expires_in: settings.apiTokenTtlSeconds,
      scope,
    });
  }

  function soap(
    res: ServerResponse,
    status: number,
    body: string | Buffer,
    contentType = "application/soap+xml; charset=utf-8",
  ) {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const send = () => {
      if (faults.html502) {
        const page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
        res.writeHead(502, { "content-type": "text/html" });
        sent.set(res, { contentType: "text/html", body: Buffer.from(page) });
        res.end(page);
        return;
      }
      // Real teleservices answer their own request id: eProxy must not pass it off as its own.
      res.writeHead(status, {
        "content-type": contentType,
        "content-length": bytes.length,
        "x-request-id": `tele-${randomBytes(6).toString("hex")}`,
      });
      if (faults.resetMidBody) {
        const half = bytes.subarray(0, Math.floor(bytes.length / 2));
        sent.set(res, { contentType, body: half });
        res.write(half, () => res.socket?.destroy());
        return;
      }
      sent.set(res, { contentType, body: bytes });
      res.end(bytes);
    };
    if (faults.slowHeadersMs > 0) setTimeout(send, faults.slowHeadersMs);
    else send();
  }

  /** Checks `Authorization: Bearer <API token>` and its binding to the client certificate. */
  function checkBearer(req: IncomingMessage, realm = "teleservices"): string | undefined {
    return bearerOf(req, realm).denied;
  }

  function bearerOf(req: IncomingMessage, realm: string): { token?: ApiToken; denied?: string } {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "");
    const t = m ? tokens.get(m[1] as string) : undefined;
    if (!t || t.expiresAt <= Date.now()) return { denied: "InvalidToken" };
    if (t.realm !== realm) return { denied: "WrongRealm" };
    if (t.thumbprint !== thumbprintOf(req.socket as TLSSocket))
      return { denied: "TokenNotBoundToCertificate" };
    return { token: t };
  }

  /**
   * The conformity mock (`POST …/mockservice/apipsc/signsessiondata`): takes the session data the
   * user software read from the proxy, checks it against the API token's subject, and answers the
   * same data with a compact JWS (ES256) over it, verifiable with the published JWKS.
   */
  async function signSessionData(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { token, denied } = bearerOf(req, SIGN_SESSION_DATA_REALM);
    if (!token) return json(res, 401, { error: "invalid_token", error_description: denied });
    let body: Record<string, unknown>;
    try {
      body = JSON.parse((await readAll(req)).toString()) as Record<string, unknown>;
    } catch {
      return json(res, 400, { error: "invalid_request", error_description: "a JSON body is expected" });
    }
    const data: Record<string, string> = {};
    for (const field of SESSION_DATA_FIELDS) {
      const v = body?.[field];
      if (typeof v !== "string" || v === "") {
        return json(res, 400, { error: "invalid_request", error_description: `${field} missing` });
      }
      data[field] = v;
    }
    if (data.nationalId !== token.sub || (token.pscClientId && data.clientID !== token.pscClientId)) {
      return json(res, 403, {
        error: "access_denied",
        error_description: "nationalId or clientID is not the API token's subject",
      });
    }
    const signature = await new CompactSign(Buffer.from(JSON.stringify(data)))
      .setProtectedHeader({ alg: "ES256", kid: signingKid })
      .sign(signing.privateKey);
    json(res, 200, { ...data, signature });
  }

  async function insi(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const denied = checkBearer(req);
    if (denied) return soap(res, 401, soap12Fault(denied, "Jeton d'accès refusé"));
    const body = (await readAll(req)).toString();
    const name = /<insi:NomNaissance>([^<]*)</.exec(body)?.[1] ?? "";
    if (name === "SIRAM")
      return soap(res, 500, soap12Fault("siram_40", "Erreur technique du service (simulée)"));
    const cr = name === "INCONNU" ? "01" : name === "HOMONYME" ? "02" : "00";
    soap(res, 200, insiSearchResponse(cr, name));
  }

  async function dmp(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const denied = checkBearer(req);
    if (denied) return soap(res, 401, soap12Fault(denied, "Jeton d'accès refusé"));
    const ct = req.headers["content-type"] ?? "";
    const body = await readAll(req);
    if (path === "/dmp/registry") {
      const text = body.toString();
      const patient =
        /\$XDSDocumentEntryPatientId"><rim:ValueList><rim:Value>'([^^']*)/.exec(text)?.[1] ?? "";
      if (patient.includes("ERR"))
        return soap(res, 200, registryErrorResponse("XDSUnknownPatientId", "patient inconnu du DMP"));
      const n = Number(/^N(\d+)/.exec(patient)?.[1] ?? 21);
      return soap(res, 200, iti18Response(n));
    }
    const boundary = boundaryOf(ct);
    if (!ct.startsWith("multipart/related") || !boundary) {
      return soap(res, 400, soap12Fault("NotMtom", "Requête MTOM attendue"));
    }
    const declared = req.headers["content-length"];
    if (declared !== undefined && Number(declared) !== body.length) {
      return soap(res, 400, soap12Fault("LengthMismatch", "Content-Length incorrect"));
    }
    const parts = parseMultipart(body, boundary);
    const root = parts[0]?.body.toString() ?? "";
    if (root.includes(ACTIONS.iti43)) {
      const size = Number(/<xdsb:DocumentUniqueId>size-(\d+)</.exec(root)?.[1] ?? 1024);
      const b = `MIMEBoundary_${randomBytes(8).toString("hex")}`;
      const f = mtomParts(b, `<ret>${ACTIONS.iti43}Response</ret>`);
      const doc = Buffer.alloc(size, 0x41);
      return soap(
        res,
        200,
        Buffer.concat([Buffer.from(f.head + f.attachmentHead("doc1@eproxy")), doc, Buffer.from(f.tail)]),
        mtomContentType(b, `${ACTIONS.iti43}Response`),
      );
    }
    // ITI-41: prove byte-exactness by returning the SHA-256 of every part and of the whole body.
    const hashes = parts
      .map(
        (p) =>
          `<ep:PartHash bytes="${p.body.length}">${createHash("sha256").update(p.body).digest("hex")}</ep:PartHash>`,
      )
      .join("");
    soap(
      res,
      200,
      `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:ep="urn:eproxy:sim"><soap:Body>` +
        `<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>` +
        `<ep:BodyHash bytes="${body.length}">${createHash("sha256").update(body).digest("hex")}</ep:BodyHash>${hashes}</soap:Body></soap:Envelope>`,
    );
  }

  async function echo(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readAll(req);
    const report = JSON.stringify({
      headers: req.headers,
      url: req.url,
      bytes: body.length,
      sha256: createHash("sha256").update(body).digest("hex"),
    });
    soap(
      res,
      200,
      `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><Echo><![CDATA[${report}]]></Echo></soap:Body></soap:Envelope>`,
    );
  }

  const server = https.createServer(
    { cert: opts.tls.cert, key: opts.tls.key, ca: opts.tls.ca, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      if (sim.onCall && !path.startsWith("/control/")) {
        const at = Date.now();
        const applied = { ...faults };
        res.once("close", () => {
          const answer = sent.get(res);
          sim.onCall?.({
            path,
            at,
            durationMs: Date.now() - at,
            headers: { ...req.headers },
            request: received.get(req) ?? Buffer.alloc(0),
            ...(res.headersSent ? { status: res.statusCode } : {}),
            ...(answer ? { contentType: answer.contentType } : {}),
            response: answer?.body ?? Buffer.alloc(0),
            faults: applied,
          });
        });
      }
      (async () => {
        if (path === "/control/stats") return json(res, 200, stats);
        if (path === "/mockservice/jwks.json") return json(res, 200, jwks);
        if (path === "/control/faults" && req.method === "POST") {
          Object.assign(faults, JSON.parse((await readAll(req)).toString() || "{}"));
          return json(res, 200, faults);
        }
        if (req.method !== "POST") return json(res, 405, { error: "method not allowed" });
        if (path === "/as/token") return tokenExchange(req, res, "teleservices");
        if (path === `/realms/${SIGN_SESSION_DATA_REALM}/protocol/openid-connect/token`) {
          return tokenExchange(req, res, SIGN_SESSION_DATA_REALM);
        }
        stats.requests++;
        stats.lastHeaders = { ...req.headers };
        if (path.startsWith("/insi")) return insi(req, res);
        if (path.startsWith("/dmp/")) return dmp(req, res, path);
        if (path === "/mtls-only" || path.startsWith("/mtls-only/")) return echo(req, res);
        if (path === "/mockservice/apipsc/signsessiondata") return signSessionData(req, res);
        json(res, 404, { error: "not found" });
      })().catch(() => {
        if (!res.headersSent) json(res, 500, { error: "server_error" });
        else res.destroy();
      });
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.listenAddress ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `https://${opts.host ?? "localhost"}:${port}`;
  const sim: TeleserviceSimulator = {
    url,
    tokenEndpoint: `${url}/as/token`,
    signSessionDataTokenEndpoint: `${url}/realms/${SIGN_SESSION_DATA_REALM}/protocol/openid-connect/token`,
    mockServiceUrl: `${url}/mockservice`,
    mockJwksUrl: `${url}/mockservice/jwks.json`,
    faults,
    stats,
    settings,
    reset() {
      Object.assign(faults, { slowHeadersMs: 0, resetMidBody: false, html502: false });
      Object.assign(stats, { exchanges: 0, requests: 0, lastHeaders: {}, lastExchangeHeaders: {} });
    },
    async close() {
      pscAgent.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return sim;
}
