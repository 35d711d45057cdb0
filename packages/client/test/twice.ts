/**
 * The 20-line program of an integrator, run twice in a row against the sandbox by the end-to-end
 * test: the second run meets the live session of the first (CibaSessionReusedError) and asks for a
 * new one; eProxy's refusals are EproxyRelayError. Usage: node twice.js BASE_URL CERTS_DIR NATIONAL_ID
 */
import { readFileSync } from "node:fs";
import {
  CibaSessionReusedError,
  createEproxyClient,
  EproxyRelayError,
  loginWithCiba,
  relaySoap,
} from "@eproxy/client";

const [baseUrl = "", dir = "", nationalId = ""] = process.argv.slice(2);
const pem = (file: string) => readFileSync(`${dir}/${file}`, "utf8");
const eproxy = createEproxyClient({
  baseUrl,
  cert: pem("clients/lps-demo.pem"),
  key: pem("clients/lps-demo-key.pem"),
  ca: pem("ca.pem"),
});
const out: Record<string, unknown> = {};

async function login(): Promise<string> {
  try {
    return (await loginWithCiba(eproxy, { nationalId })).sessionToken;
  } catch (err) {
    if (!(err instanceof CibaSessionReusedError)) throw err;
    out.reused = err.message; // This program stored no token: it asks for a new session (a new push).
    return (await loginWithCiba(eproxy, { nationalId, newSession: true })).sessionToken;
  }
}

const sessionToken = await login();
const soap = { service: "insi", contentType: "application/soap+xml", body: pem("insi-request.xml") };
const answer = await relaySoap(eproxy, { ...soap, sessionToken });
out.insi = [answer.status, /CodeCR>(\d+)</.exec(await answer.text())?.[1]];
try {
  await relaySoap(eproxy, { ...soap, sessionToken: "eps_gone" });
} catch (err) {
  if (!(err instanceof EproxyRelayError)) throw err;
  out.refused = [err.code, err.httpStatus];
}
eproxy.close();
console.log(JSON.stringify(out));
