/**
 * A program written the way an integrator would, against the *packed* @eproxy/client in a fresh
 * project with a stock `tsc --init` tsconfig (NodeNext). The end-to-end test copies it there,
 * compiles it with tsc and runs it against a sandbox; it prints one JSON object with what it saw.
 *
 * Usage: node consumer.js BASE_URL SANDBOX_CERTS_DIR NATIONAL_ID OTHER_NATIONAL_ID
 */
import { createReadStream, readFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { ConnectError } from "@connectrpc/connect";
import {
  CibaStatus,
  cibaStatusName,
  createEproxyClient,
  EPROXY_ERROR_DOMAIN,
  EproxyRelayError,
  ErrorInfoSchema,
  eproxyErrorOf,
  isEproxyError,
  loginWithCiba,
  relaySoap,
} from "@eproxy/client";

const [baseUrl = "", dir = "", nationalId = "", otherNationalId = ""] = process.argv.slice(2);
const pem = (file: string) => readFileSync(path.join(dir, file), "utf8");
const apiKeys = JSON.parse(pem("sandbox-api-keys.json")) as Record<string, { key: string }>;
const soapRequest = path.join(dir, "insi-request.xml");
const seen: Record<string, unknown> = {};

// 1. gRPC with the client certificate: CIBA login, then both relay paths.
const grpc = createEproxyClient({
  baseUrl,
  cert: pem("clients/lps-demo.pem"),
  key: pem("clients/lps-demo-key.pem"),
  ca: pem("ca.pem"),
  protocol: "grpc",
});
const statuses: string[] = [];
const login = await loginWithCiba(grpc, {
  nationalId,
  channel: "MOBILE",
  signal: AbortSignal.timeout(60_000),
  onStatus: (ev) => statuses.push(`${cibaStatusName(ev.status)}/${CibaStatus[ev.status]}`),
});
seen.statuses = statuses;
seen.familyName = login.session.professional?.familyName;
seen.tokenPrefix = login.sessionToken.slice(0, 4);
const token = login.sessionToken;

const forwarded = await relaySoap(grpc, {
  via: "forwardSoap",
  sessionToken: token,
  service: "insi",
  contentType: "application/soap+xml; charset=utf-8",
  body: readFileSync(soapRequest),
});
seen.forwardSoap = {
  statusCode: forwarded.statusCode,
  codeCr: /CodeCR>(\d+)</.exec(new TextDecoder().decode(forwarded.body))?.[1],
};

const sent = await relaySoap(grpc, {
  sessionToken: token,
  service: "insi",
  path: "rechercherInsAvecTraitsIdentite",
  contentType: "application/soap+xml; charset=utf-8",
  body: createReadStream(soapRequest),
});
const sentText = await sent.text();
seen.send = { status: sent.status, codeCr: /CodeCR>(\d+)</.exec(sentText)?.[1] };

// eProxy's own refusal is thrown (typed, with eProxy's code), by both relay paths.
const refusal = async (call: () => Promise<unknown>) => {
  try {
    await call();
    return "no error";
  } catch (err) {
    if (!(err instanceof EproxyRelayError)) return String(err);
    return {
      code: err.code,
      httpStatus: err.httpStatus,
      isSessionInvalid: isEproxyError(err, "SESSION_INVALID"),
    };
  }
};
const unknownSession = {
  sessionToken: "eps_unknown",
  service: "insi",
  contentType: "application/soap+xml; charset=utf-8",
  body: "<x/>",
};
seen.badSend = await refusal(() => relaySoap(grpc, unknownSession));
seen.badForwardSoap = await refusal(() => relaySoap(grpc, { ...unknownSession, via: "forwardSoap" }));

// A teleservice's own SOAP fault (HTTP 500) is its answer: returned untouched, not thrown.
const siram = await relaySoap(grpc, {
  sessionToken: token,
  service: "insi",
  contentType: "application/soap+xml; charset=utf-8",
  body: readFileSync(soapRequest, "utf8").replace(/<insi:NomNaissance>[^<]*</, "<insi:NomNaissance>SIRAM<"),
});
seen.teleserviceFault = { status: siram.status, fault: /siram_40/.test(await siram.text()) };

// 2. Connect protocol with the API key: the same session, then eProxy's error code from ErrorInfo.
const connect = createEproxyClient({
  baseUrl,
  apiKey: apiKeys["lps-demo"]?.key ?? "",
  ca: pem("ca.pem"),
  protocol: "connect",
});
const got = await connect.auth.getSession({ sessionToken: token });
seen.getSession = got.session?.professional?.nationalId;
try {
  await connect.auth.getSession({ sessionToken: "eps_not-a-session" });
  seen.badSession = "no error";
} catch (err) {
  const e = eproxyErrorOf(err);
  const info = err instanceof ConnectError ? err.findDetails(ErrorInfoSchema)[0] : undefined;
  seen.badSession = {
    code: e?.code,
    isSessionInvalid: isEproxyError(err, "SESSION_INVALID"),
    errorInfoReason: info?.reason,
    errorInfoDomain: info?.domain === EPROXY_ERROR_DOMAIN ? "eproxy" : info?.domain,
  };
}

// 3. An AbortSignal stops the journey.
const controller = new AbortController();
try {
  await loginWithCiba(connect, {
    nationalId: otherNationalId,
    signal: controller.signal,
    onStarted: () => controller.abort(),
  });
  seen.aborted = "not aborted";
} catch (err) {
  seen.aborted = err instanceof ConnectError ? ConnectError.from(err).code : String(err);
}

grpc.close();
connect.close();
process.stdout.write(`${JSON.stringify(seen)}\n`);
