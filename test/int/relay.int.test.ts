import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import { Readable } from "node:stream";
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import { ensureDevPki } from "../../src/infra/dev-pki.ts";
import {
  ACTIONS,
  insiSearchRequest,
  iti18Request,
  iti41RootPart,
  iti43Request,
  mtomContentType,
  mtomParts,
} from "../../src/sandbox/soap-samples.ts";
import { parseMultipart } from "../../src/sandbox/teleservices.ts";
import { type AuthEnv, cibaLogin, DOCTOR, NURSE, startAuthEnv } from "../support/auth-env.ts";
import { freePort } from "../support/cli.ts";
import { expectDocumentedAnswer } from "../support/openapi.ts";
import { testPki } from "../support/server.ts";

const SOAP12 = `application/soap+xml; charset=utf-8; action="${ACTIONS.insiSearch}"`;
let env: AuthEnv;
let token: string;

async function login(
  e: AuthEnv,
  nationalId: string,
  clientId: "lps-demo" | "lps-other" = "lps-demo",
): Promise<string> {
  return cibaLogin(e.auth(clientId), nationalId);
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
}

/** POSTs to eProxy over HTTP/1.1 like curl; `body` may be a stream. */
function send(
  path: string,
  body: string | Buffer | Readable,
  headers: Record<string, string>,
  e: AuthEnv = env,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${e.url}${path}`,
      { method: "POST", ca: e.ca, agent: false, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const b = Buffer.concat(chunks);
          const answer = { status: res.statusCode ?? 0, headers: res.headers, body: b, text: b.toString() };
          try {
            expectDocumentedAnswer("POST", path, { ...answer, body: answer.text });
          } catch (err) {
            reject(err);
            return;
          }
          resolve(answer);
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

function authHeaders(
  clientId: "lps-demo" | "lps-other" = "lps-demo",
  session = token,
): Record<string, string> {
  return { "x-eproxy-api-key": env.keys[clientId], authorization: `Bearer ${session}` };
}

beforeAll(async () => {
  env = await startAuthEnv({
    teleservices: [
      { name: "tiny", upstreamUrl: "https://localhost:1/unused", maxBodyBytes: 1000 },
      { name: "down", upstreamUrl: `https://127.0.0.1:${await freePort()}/x`, connectTimeoutMs: 1000 },
    ],
  });
  env.deps.config.teleservices; // config is frozen; the env wires the simulators
  token = await login(env, DOCTOR);
});
afterAll(async () => {
  await env?.close();
});
beforeEach(() => env.tele.reset());

describe("relay: INSi (SOAP 1.2)", () => {
  it("answers CR 00 / 01 / 02 from the simulator, through /send with the exchanged API token", async () => {
    for (const [name, cr] of [
      ["UNIQUE", "00"],
      ["INCONNU", "01"],
      ["HOMONYME", "02"],
    ]) {
      const res = await send(
        "/send/insi/rechercherInsAvecTraitsIdentite",
        insiSearchRequest(name as string),
        {
          ...authHeaders(),
          "content-type": SOAP12,
        },
      );
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toBe("application/soap+xml; charset=utf-8");
      expect(res.text).toContain(`<insi:CodeCR>${cr}</insi:CodeCR>`);
    }
    const seen = env.tele.stats.lastHeaders;
    expect(seen.authorization).toMatch(/^Bearer [\w-]{43}$/);
    expect(seen.authorization).not.toContain(token);
    // One exchange served the three calls (cached API token).
    expect(env.tele.stats.exchanges).toBeLessThanOrEqual(1);
  });

  it("passes an upstream SOAP fault (HTTP 500, siram) through untouched", async () => {
    const res = await send("/send/insi", insiSearchRequest("SIRAM"), {
      ...authHeaders(),
      "content-type": SOAP12,
    });
    expect(res.status).toBe(500);
    expect(res.text).toContain("<soap:Value>siram:siram_40</soap:Value>");
    expect(res.text).toContain("Erreur technique du service (simulée)");
  });

  it("works through RelayService.ForwardSoap over gRPC, with the same semantics", async () => {
    const relay = env.grpc(RelayService);
    const res = await relay.forwardSoap({
      sessionToken: token,
      service: "insi",
      path: "/rechercherInsAvecTraitsIdentite",
      contentType: SOAP12,
      body: Buffer.from(insiSearchRequest("UNIQUE")),
      headers: [{ name: "x-lps-name", value: "sandbox" }],
    });
    expect(res.statusCode).toBe(200);
    expect(Buffer.from(res.body).toString()).toContain("<insi:CodeCR>00</insi:CodeCR>");
    expect(res.headers.find((h) => h.name === "x-correlation-id")).toBeUndefined();
    const notFound = (await relay
      .forwardSoap({ sessionToken: token, service: "nope", contentType: SOAP12 })
      .catch((e: unknown) => e)) as ConnectError;
    expect(notFound.code).toBe(Code.NotFound);
    const noSession = (await relay
      .forwardSoap({ service: "insi", contentType: SOAP12, body: new Uint8Array(1) })
      .catch((e: unknown) => e)) as ConnectError;
    expect(noSession.code).toBe(Code.Unauthenticated);
    expect(noSession.metadata.get("x-eproxy-error")).toBe("SESSION_INVALID");
  });

  it("a teleservice resetting mid-answer: ForwardSoap over gRPC answers unavailable (UPSTREAM_BAD_RESPONSE), the SEND trace says so", async () => {
    const relay = env.grpc(RelayService);
    const since = Date.now();
    // The simulator sends the headers and half the answer, then destroys its socket (a real reset).
    env.tele.faults.resetMidBody = true;
    const err = (await relay
      .forwardSoap({
        sessionToken: token,
        service: "insi",
        path: "/rechercherInsAvecTraitsIdentite",
        contentType: SOAP12,
        body: Buffer.from(insiSearchRequest("UNIQUE")),
      })
      .catch((e: unknown) => e)) as ConnectError;
    env.tele.faults.resetMidBody = false;
    expect(err.code).toBe(Code.Unavailable);
    expect(err.metadata.get("x-eproxy-error")).toBe("UPSTREAM_BAD_RESPONSE");
    expect(err.rawMessage).toMatch(/teleservice insi closed the connection/);
    const sends = async () => {
      await env.deps.traces.flush();
      const all = await env.deps.traceStore.query({ start: since, end: Date.now() + 1_000, limit: 100 });
      return all.filter((t) => t.type === "SEND");
    };
    await expect
      .poll(async () => (await sends()).length, { timeout: 20_000, interval: 100 })
      .toBeGreaterThan(0);
    const [send] = await sends();
    expect(send).toMatchObject({ service: "insi", outcome: "UPSTREAM_BAD_RESPONSE", upstreamStatus: 200 });
  });

  it("a token used with another client's certificate is rejected by the teleservice", async () => {
    await send("/send/insi", insiSearchRequest("UNIQUE"), { ...authHeaders(), "content-type": SOAP12 });
    const apiToken = String(env.tele.stats.lastHeaders.authorization);
    const pki = testPki();
    const other = pki.client("lps-other");
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(
        `${env.tele.url}/insi`,
        {
          method: "POST",
          ca: pki.ca,
          cert: readFileSync(other.certFile),
          key: readFileSync(other.keyFile),
          headers: { authorization: apiToken, "content-type": SOAP12 },
        },
        (r) => {
          let b = "";
          r.on("data", (c: Buffer) => {
            b += c;
          });
          r.on("end", () => resolve({ status: r.statusCode ?? 0, body: b }));
        },
      );
      req.on("error", reject);
      req.end(insiSearchRequest("UNIQUE"));
    });
    expect(res.status).toBe(401);
    expect(res.body).toContain("TokenNotBoundToCertificate");
  });
});

describe("relay: DMP (XDS.b, MTOM)", () => {
  it("ITI-18 answers N entries; a RegistryError with HTTP 200 passes through", async () => {
    const ok = await send("/send/dmp/registry", iti18Request("N21-PATIENT"), {
      ...authHeaders(),
      "content-type": SOAP12,
    });
    expect(ok.status).toBe(200);
    expect(ok.text.match(/<rim:ExtrinsicObject /g)).toHaveLength(21);
    const err = await send("/send/dmp/registry", iti18Request("ERR-PATIENT"), {
      ...authHeaders(),
      "content-type": SOAP12,
    });
    expect(err.status).toBe(200);
    expect(err.text).toContain('errorCode="XDSUnknownPatientId"');
  });

  it("relays a 50 MB ITI-41 MTOM byte-exact, with its Content-Length and boundary", async () => {
    const boundary = `MIMEBoundary_${randomBytes(12).toString("hex")}`;
    const docSize = 50 * 1024 * 1024;
    const chunk = randomBytes(64 * 1024);
    const docHash = createHash("sha256");
    const root = iti41RootPart("doc1@eproxy");
    const rootHash = createHash("sha256").update(root).digest("hex");
    const frame = mtomParts(boundary, root);
    const bodyHash = createHash("sha256");
    const head = Buffer.from(frame.head + frame.attachmentHead("doc1@eproxy"));
    const tail = Buffer.from(frame.tail);
    const total = head.length + docSize + tail.length;
    const stream = Readable.from(
      (function* () {
        bodyHash.update(head);
        yield head;
        for (let sent = 0; sent < docSize; sent += chunk.length) {
          docHash.update(chunk);
          bodyHash.update(chunk);
          yield chunk;
        }
        bodyHash.update(tail);
        yield tail;
      })(),
    );
    const res = await send("/send/dmp/repository", stream, {
      ...authHeaders(),
      "content-type": mtomContentType(boundary, ACTIONS.iti41),
      "content-length": String(total),
    });
    expect(res.status).toBe(200);
    expect(res.text).toContain(`<ep:BodyHash bytes="${total}">${bodyHash.digest("hex")}</ep:BodyHash>`);
    expect(res.text).toContain(`<ep:PartHash bytes="${docSize}">${docHash.digest("hex")}</ep:PartHash>`);
    expect(res.text).toContain(rootHash);
    expect(env.tele.stats.lastHeaders["content-length"]).toBe(String(total));
    expect(env.tele.stats.lastHeaders["content-type"]).toBe(mtomContentType(boundary, ACTIONS.iti41));
  }, 60_000);

  it("ITI-43 answers MTOM that comes back byte-exact", async () => {
    const boundary = "b1";
    const f = mtomParts(boundary, iti43Request(3 * 1024 * 1024));
    const res = await send("/send/dmp/repository", `${f.head}${f.tail}`, {
      ...authHeaders(),
      "content-type": mtomContentType(boundary, ACTIONS.iti43),
    });
    expect(res.status).toBe(200);
    const ct = String(res.headers["content-type"]);
    expect(ct).toMatch(/^multipart\/related; type="application\/xop\+xml"; boundary="MIMEBoundary_/);
    const parts = parseMultipart(res.body, /boundary="([^"]+)"/.exec(ct)?.[1] as string);
    expect(parts[1]?.body.length).toBe(3 * 1024 * 1024);
    expect(parts[1]?.body.every((b) => b === 0x41)).toBe(true);
  });

  it("makes exactly one token exchange for 50 concurrent relays on a fresh session", async () => {
    const fresh = await login(env, NURSE);
    env.tele.reset();
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        send("/send/dmp/registry", iti18Request("N2-PATIENT"), {
          ...authHeaders("lps-demo", fresh),
          "content-type": SOAP12,
        }),
      ),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(env.tele.stats.exchanges).toBe(1);
    expect(env.tele.stats.requests).toBe(50);
    await env.auth().logout({ sessionToken: fresh });
  });
});

describe("relay: headers", () => {
  it("strips hop-by-hop fields, credentials and eProxy headers; keeps the rest, the query and Content-Length", async () => {
    const body = insiSearchRequest("UNIQUE", "urn:uuid:11111111-2222-3333-4444-555555555555");
    const res = await send("/send/echo/a/b?x=1&y=%C3%A9", body, {
      ...authHeaders(),
      "content-type": SOAP12,
      "content-length": String(Buffer.byteLength(body)),
      cookie: "proxy_session_id=secret",
      connection: "keep-alive, x-hop",
      "x-hop": "drop me",
      "keep-alive": "timeout=5",
      "x-lps-id": "keep me",
      "x-correlation-id": "corr-42",
    });
    expect(res.status).toBe(200);
    const report = JSON.parse(/<!\[CDATA\[(.*)\]\]>/s.exec(res.text)?.[1] as string);
    expect(report.url).toBe("/mtls-only/a/b?x=1&y=%C3%A9");
    expect(report.bytes).toBe(Buffer.byteLength(body));
    expect(report.sha256).toBe(createHash("sha256").update(body).digest("hex"));
    const h = report.headers;
    expect(h["content-length"]).toBe(String(Buffer.byteLength(body)));
    expect(h["x-lps-id"]).toBe("keep me");
    expect(h["x-correlation-id"]).toBe("corr-42");
    for (const gone of ["cookie", "x-hop", "keep-alive", "x-eproxy-api-key", "authorization"])
      expect(h[gone]).toBeUndefined();
    // The correlation id is not shown to the end user's software.
    expect(res.headers["x-correlation-id"]).toBeUndefined();
  });

  it("generates a correlation id when the caller sends none, and works over HTTP/2", async () => {
    const body = insiSearchRequest("UNIQUE");
    const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const s = http2.connect(env.url, { ca: env.ca });
      s.on("error", reject);
      const st = s.request({
        ":method": "POST",
        ":path": "/send/echo",
        ...authHeaders(),
        "content-type": SOAP12,
      });
      let status = 0;
      let text = "";
      st.on("response", (hh) => {
        status = Number(hh[":status"]);
      });
      st.on("data", (c: Buffer) => {
        text += c;
      });
      st.on("end", () => {
        s.close();
        resolve({ status, text });
      });
      st.end(body);
    });
    expect(res.status).toBe(200);
    const report = JSON.parse(/<!\[CDATA\[(.*)\]\]>/s.exec(res.text)?.[1] as string);
    expect(report.headers["x-correlation-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(report.sha256).toBe(createHash("sha256").update(body).digest("hex"));
  });
});

describe("relay: eProxy's own failures are SOAP faults", () => {
  const insi = () => insiSearchRequest("UNIQUE");
  const fault12 = (text: string, side: string, sub: string) => {
    expect(text).toContain(`<env:Value>env:${side}</env:Value>`);
    expect(text).toContain(`<env:Value>ep:${sub}</env:Value>`);
    expect(text).toContain('xml:lang="fr"');
  };

  it("missing or foreign session → 401 Sender/SessionInvalid", async () => {
    const res = await send("/send/insi", insi(), {
      "x-eproxy-api-key": env.keys["lps-demo"],
      "content-type": SOAP12,
    });
    expect(res.status).toBe(401);
    expect(res.headers["content-type"]).toBe("application/soap+xml; charset=utf-8");
    fault12(res.text, "Sender", "SessionInvalid");
    const foreign = await send("/send/insi", insi(), { ...authHeaders("lps-other"), "content-type": SOAP12 });
    expect(foreign.status).toBe(401);
  });

  it("no API key → 401; unknown service → 404; service not allowed → 403", async () => {
    const anon = await send("/send/insi", insi(), {
      authorization: `Bearer ${token}`,
      "content-type": SOAP12,
    });
    expect(anon.status).toBe(401);
    fault12(anon.text, "Sender", "CallerNotAuthenticated");
    const unknown = await send("/send/nope/x", insi(), { ...authHeaders(), "content-type": SOAP12 });
    expect(unknown.status).toBe(404);
    fault12(unknown.text, "Sender", "UnknownService");
    const other = await login(env, NURSE, "lps-other");
    const denied = await send("/send/dmp/registry", insi(), {
      ...authHeaders("lps-other", other),
      "content-type": SOAP12,
    });
    expect(denied.status).toBe(403);
    fault12(denied.text, "Sender", "ServiceNotAllowed");
  });

  it("body too large → 413, announced (before any upstream byte) or streamed", async () => {
    const big = "x".repeat(2000);
    const announced = await send("/send/tiny", big, {
      ...authHeaders(),
      "content-type": SOAP12,
      "content-length": "2000",
    });
    expect(announced.status).toBe(413);
    fault12(announced.text, "Sender", "BodyTooLarge");
    const streamed = await send("/send/tiny", Readable.from([Buffer.from(big)]), {
      ...authHeaders(),
      "content-type": SOAP12,
    });
    expect(streamed.status).toBe(413);
    expect(env.tele.stats.requests).toBe(0);
  });

  it("a SOAP 1.1 request gets a SOAP 1.1 fault", async () => {
    const res = await send("/send/nope", "<x/>", {
      ...authHeaders(),
      "content-type": "text/xml; charset=utf-8",
      soapaction: '"urn:x"',
    });
    expect(res.status).toBe(404);
    expect(res.headers["content-type"]).toBe("text/xml; charset=utf-8");
    expect(res.text).toContain("<faultcode>soap:Client</faultcode>");
  });

  it("upstream unreachable → 503 Receiver", async () => {
    const res = await send("/send/down", insi(), { ...authHeaders(), "content-type": SOAP12 });
    expect(res.status).toBe(503);
    fault12(res.text, "Receiver", "UpstreamUnavailable");
  });

  it("upstream too slow → 504; HTML from a load balancer → 502; reset mid-body → cut answer", async () => {
    const slow = await startAuthEnv({ teleservices: [{ name: "insi", headersTimeoutMs: 300 }] });
    try {
      const t = await login(slow, DOCTOR);
      slow.tele.faults.slowHeadersMs = 1_500;
      const timeout = await send(
        "/send/insi",
        insi(),
        { "x-eproxy-api-key": slow.keys["lps-demo"], authorization: `Bearer ${t}`, "content-type": SOAP12 },
        slow,
      );
      expect(timeout.status).toBe(504);
      fault12(timeout.text, "Receiver", "UpstreamTimeout");
      slow.tele.faults.slowHeadersMs = 0;
      slow.tele.faults.html502 = true;
      const html = await send(
        "/send/insi",
        insi(),
        { "x-eproxy-api-key": slow.keys["lps-demo"], authorization: `Bearer ${t}`, "content-type": SOAP12 },
        slow,
      );
      expect(html.status).toBe(502);
      fault12(html.text, "Receiver", "UpstreamBadResponse");
      expect(html.text).not.toContain("Bad Gateway</h1>");
      slow.tele.faults.html502 = false;
      slow.tele.faults.resetMidBody = true;
      const cut = await send(
        "/send/insi",
        insi(),
        { "x-eproxy-api-key": slow.keys["lps-demo"], authorization: `Bearer ${t}`, "content-type": SOAP12 },
        slow,
      ).then(
        (r) => r,
        (e: Error) => e,
      );
      // Headers were already relayed: the caller sees an aborted answer, never a truncated "success".
      if (cut instanceof Error) expect(cut.message).toMatch(/aborted|socket hang up|ECONNRESET/);
      else expect(cut.body.length).toBeLessThan(Number(cut.headers["content-length"]));
    } finally {
      await slow.close();
    }
  });

  it("upstream certificate not trusted → 502", async () => {
    const otherCa = await ensureDevPki(`${testPki().dir}-other-ca`, []);
    const bad = await startAuthEnv({ teleservices: [{ name: "insi", caFile: otherCa.ca.certFile }] });
    try {
      const t = await login(bad, DOCTOR);
      const res = await send(
        "/send/insi",
        insi(),
        { "x-eproxy-api-key": bad.keys["lps-demo"], authorization: `Bearer ${t}`, "content-type": SOAP12 },
        bad,
      );
      expect(res.status).toBe(502);
      fault12(res.text, "Receiver", "UpstreamBadResponse");
    } finally {
      await bad.close();
    }
  });

  it("a session whose PSC refresh is refused → 401 with the re-authentication subcode", async () => {
    const short = await startAuthEnv({
      psc: { accessTokenTtlSeconds: 30 },
      sessions: { refreshBeforeExpirySeconds: 30 },
    });
    try {
      const t = await login(short, DOCTOR);
      short.psc.faults.refreshInvalidGrant = true;
      const res = await send(
        "/send/insi",
        insi(),
        { "x-eproxy-api-key": short.keys["lps-demo"], authorization: `Bearer ${t}`, "content-type": SOAP12 },
        short,
      );
      expect(res.status).toBe(401);
      fault12(res.text, "Sender", "ReauthenticationRequired");
    } finally {
      await short.close();
    }
  });
});
