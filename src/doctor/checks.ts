/**
 * The checks of `eproxy doctor`, in the order the table shows them. Each yields rows with a verdict;
 * none makes a business call: PSC is asked for its discovery document and given an invalid refresh
 * token (its answer tells whether it authenticated the client), the authorization servers and
 * teleservices only see a TLS handshake, Redis and MongoDB a ping and a short-lived doctor key.
 */
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { Socket } from "node:net";
import { createSecureContext, type PeerCertificate, TLSSocket } from "node:tls";
import { createClientRegistry } from "../auth/clients.ts";
import type { ClientConfig, Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import { fileIdentities } from "../infra/client-tls.ts";
import { loadKeyRing } from "../infra/key-ring.ts";
import {
  type ClientTlsMaterial,
  describeNetError,
  getOverMtls,
  probeMongo,
  tlsHandshake,
  withRedis,
} from "../infra/probes.ts";
import { createPscGateway } from "../infra/psc-openid.ts";
import { createLogger } from "../log.ts";
import { errnoText, fileProblems, materialProblems, stateDirProblems } from "../preflight.ts";

/** A row's verdict. */
export type Verdict = "ok" | "warn" | "fail" | "skip";

/** One line of the doctor's table. */
export interface CheckRow {
  check: string;
  verdict: Verdict;
  detail: string;
}

/** What the checks need besides the configuration. */
export interface DoctorOptions {
  /** CA certificates (PEM) the client certificates must chain to. */
  clientCas: string[];
  /** Time limit of each network check. */
  timeoutMs: number;
  env: NodeJS.ProcessEnv;
  /** The clock (tests). */
  now?: () => number;
}

const DAY_MS = 86_400_000;
/** A certificate expiring sooner than this is a warning: renewal through IGC-Santé takes weeks. */
const EXPIRY_WARN_DAYS = 30;

const day = (d: Date) => d.toISOString().slice(0, 10);

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error("timed out"), { name: "TimeoutError" })), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Splits a PEM bundle into its certificates. */
function pemCertificates(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (c) => new X509Certificate(c),
  );
}

function cnOf(x: X509Certificate): string | undefined {
  return /(?:^|\n)CN=([^\n]+)/.exec(x.subject)?.[1];
}

function oneLine(dn: string): string {
  return dn.split("\n").join(", ");
}

/** The leaf certificate of a PKCS#12 bundle, read back through a TLS context (Node has no PKCS#12 parser). */
function pkcs12Leaf(pfx: Buffer, passphrase: string): X509Certificate {
  const socket = new TLSSocket(new Socket(), {
    secureContext: createSecureContext({ pfx, passphrase }),
    isServer: true,
  });
  try {
    const raw = (socket.getCertificate() as PeerCertificate | null)?.raw;
    if (!raw) throw new Error("the PKCS#12 bundle holds no certificate");
    return new X509Certificate(raw);
  } finally {
    socket.destroy();
  }
}

/** A client's certificate chain (leaf first) and TLS material, as eProxy will present them. */
function clientMaterial(c: ClientConfig): {
  chain: X509Certificate[];
  tls: ClientTlsMaterial;
  keyPem?: string;
} {
  if (c.pkcs12File) {
    const passphrase = c.pkcs12PassphraseFile ? readFileSync(c.pkcs12PassphraseFile, "utf8").trim() : "";
    const pfx = readFileSync(c.pkcs12File);
    return { chain: [pkcs12Leaf(pfx, passphrase)], tls: { pfx, passphrase } };
  }
  const cert = readFileSync(c.certFile as string, "utf8");
  const key = readFileSync(c.keyFile as string, "utf8");
  return { chain: pemCertificates(cert), tls: { cert, key }, keyPem: key };
}

/**
 * Walks from the leaf to one of the given CAs through the bundle's own intermediates and the CA files,
 * checking each signature. Returns the anchor's subject, or why no chain was found.
 */
function chainToCa(
  chain: X509Certificate[],
  cas: X509Certificate[],
  now: Date,
): { anchor?: string; problem?: string } {
  const pool = [...chain.slice(1), ...cas];
  let current = chain[0] as X509Certificate;
  for (let depth = 0; depth < 8; depth++) {
    const anchor = cas.find((ca) => current.checkIssued(ca) && current.verify(ca.publicKey));
    if (anchor) {
      if (new Date(anchor.validTo) < now) return { problem: `the CA ${oneLine(anchor.subject)} expired` };
      return { anchor: oneLine(anchor.subject) };
    }
    const next = pool.find((p) => p !== current && current.checkIssued(p) && current.verify(p.publicKey));
    if (!next)
      return {
        problem: `no given CA issued ${oneLine(current.subject)} (issuer ${oneLine(current.issuer)})`,
      };
    if (new Date(next.validTo) < now) return { problem: `the intermediate ${oneLine(next.subject)} expired` };
    current = next;
  }
  return { problem: "chain longer than 8 certificates" };
}

/** Configuration files, material and state directory (the same findings `eproxy serve` refuses to start with). */
export function localChecks(config: Readonly<Config>, opts: DoctorOptions): CheckRow[] {
  const rows: CheckRow[] = [];
  const files = fileProblems(config);
  if (files.length === 0)
    rows.push({ check: "configuration files", verdict: "ok", detail: "every file named is readable" });
  for (const p of files) rows.push({ check: `file ${p.key}`, verdict: "fail", detail: p.message });
  for (const p of materialProblems(config, opts.env)) {
    rows.push({ check: `material ${p.key}`, verdict: "fail", detail: p.message });
  }
  const state = stateDirProblems(config);
  rows.push(
    state.length === 0
      ? { check: "state directory", verdict: "ok", detail: `${config.stateDir} writable (trace spool)` }
      : {
          check: "state directory",
          verdict: "fail",
          detail: state.map((p) => `${p.key}: ${p.message}`).join("; "),
        },
  );
  rows.push(...listenerChecks(config, opts));
  return rows;
}

function listenerChecks(config: Readonly<Config>, opts: DoctorOptions): CheckRow[] {
  const now = new Date(opts.now?.() ?? Date.now());
  let cert: X509Certificate;
  try {
    cert = pemCertificates(readFileSync(config.server.tls.certFile, "utf8"))[0] as X509Certificate;
    if (!cert) throw new Error("no certificate in the file");
  } catch (err) {
    return [
      {
        check: "listener TLS",
        verdict: "fail",
        detail: `server.tls.certFile: ${(err as NodeJS.ErrnoException).code ? errnoText(err) : (err as Error).message}`,
      },
    ];
  }
  const rows: CheckRow[] = [expiryRow("listener certificate expiry", cert, now)];
  const host = new URL(config.server.publicBaseUrl).hostname.replace(/^\[|\]$/g, "");
  const names = /^[\d.]+$|:/.test(host) ? cert.checkIP(host) : cert.checkHost(host);
  rows.push(
    names
      ? {
          check: "listener certificate name",
          verdict: "ok",
          detail: `${host} (server.publicBaseUrl) is in the certificate`,
        }
      : {
          check: "listener certificate name",
          verdict: "warn",
          detail: `${host} (server.publicBaseUrl) is not in the certificate (${cert.subjectAltName ?? oneLine(cert.subject)})`,
        },
  );
  const key = cert.publicKey;
  const bits = key.asymmetricKeyDetails?.modulusLength;
  const weak = key.asymmetricKeyType === "rsa" && bits !== undefined && bits < 2048;
  rows.push({
    check: "listener TLS settings",
    verdict: weak ? "fail" : "ok",
    detail:
      `TLS 1.2 minimum, ${key.asymmetricKeyType?.toUpperCase()}${bits ? ` ${bits} bits` : ` ${key.asymmetricKeyDetails?.namedCurve ?? ""}`}; ` +
      (config.server.tls.clientCaFile
        ? "backends may present client certificates (server.tls.clientCaFile)"
        : "backends authenticate by API key only (no server.tls.clientCaFile)"),
  });
  return rows;
}

function expiryRow(check: string, cert: X509Certificate, now: Date): CheckRow {
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (to < now) return { check, verdict: "fail", detail: `expired on ${day(to)}` };
  if (from > now) return { check, verdict: "fail", detail: `not valid before ${day(from)}` };
  const days = Math.floor((to.getTime() - now.getTime()) / DAY_MS);
  return {
    check,
    verdict: days < EXPIRY_WARN_DAYS ? "warn" : "ok",
    detail: `valid until ${day(to)} (${days} days${days < EXPIRY_WARN_DAYS ? `, less than ${EXPIRY_WARN_DAYS}: renew it` : ""})`,
  };
}

/** Each client certificate: chain to its CA, key, CN = client id, expiry. */
export function clientCertificateChecks(config: Readonly<Config>, opts: DoctorOptions): CheckRow[] {
  const now = new Date(opts.now?.() ?? Date.now());
  const cas = opts.clientCas.flatMap(pemCertificates);
  const rows: CheckRow[] = [];
  for (const c of config.clients) {
    const name = `client ${c.id}`;
    let m: ReturnType<typeof clientMaterial>;
    try {
      m = clientMaterial(c);
    } catch (err) {
      rows.push({ check: `${name} certificate`, verdict: "fail", detail: (err as Error).message });
      continue;
    }
    const leaf = m.chain[0];
    if (!leaf) {
      rows.push({ check: `${name} certificate`, verdict: "fail", detail: "no certificate in certFile" });
      continue;
    }
    if (cas.length === 0) {
      rows.push({
        check: `${name} chain`,
        verdict: "warn",
        detail: "not checked: give the CA with --client-ca FILE",
      });
    } else {
      const chain = chainToCa(m.chain, cas, now);
      rows.push(
        chain.anchor
          ? { check: `${name} chain`, verdict: "ok", detail: `chains to ${chain.anchor}` }
          : { check: `${name} chain`, verdict: "fail", detail: chain.problem as string },
      );
    }
    if (m.keyPem) {
      let matches = false;
      try {
        matches = leaf.checkPrivateKey(createPrivateKey(m.keyPem));
      } catch {
        matches = false;
      }
      rows.push(
        matches
          ? { check: `${name} key`, verdict: "ok", detail: "the private key matches the certificate" }
          : {
              check: `${name} key`,
              verdict: "fail",
              detail: "the private key does not match the certificate",
            },
      );
    } else {
      rows.push({
        check: `${name} key`,
        verdict: "ok",
        detail: "the PKCS#12 bundle opens with its passphrase",
      });
    }
    const cn = cnOf(leaf);
    rows.push(
      cn === c.id
        ? { check: `${name} CN`, verdict: "ok", detail: `CN=${cn}` }
        : {
            check: `${name} CN`,
            verdict: "fail",
            detail: `CN=${cn ?? "(none)"} but the client id is ${c.id}: PSC identifies the client by its CN`,
          },
    );
    rows.push(expiryRow(`${name} expiry`, leaf, now));
  }
  if (config.clients.length === 0) {
    rows.push({
      check: "clients",
      verdict: "warn",
      detail: "no client in the configuration (MongoDB registry only?)",
    });
  }
  return rows;
}

/** PSC: discovery over mTLS, each client authenticated at the token endpoint, clock skew. */
export async function pscChecks(config: Readonly<Config>, opts: DoctorOptions): Promise<CheckRow[]> {
  const rows: CheckRow[] = [];
  const ca = config.psc.caFile ? readFileSync(config.psc.caFile, "utf8") : undefined;
  const first = config.clients[0];
  let material: ClientTlsMaterial | undefined;
  try {
    material = first ? clientMaterial(first).tls : undefined;
  } catch {
    material = undefined;
  }
  const url = new URL(config.psc.discoveryUrl);
  const where = `${url.host}${url.pathname}`;
  let discovered = false;
  try {
    const t0 = opts.now?.() ?? Date.now();
    const res = await getOverMtls(config.psc.discoveryUrl, {
      ...(material ? { client: material } : {}),
      ...(ca ? { ca } : {}),
      timeoutMs: opts.timeoutMs,
    });
    const t1 = opts.now?.() ?? Date.now();
    const issuer = (res.json as { issuer?: string } | undefined)?.issuer;
    if (res.status !== 200 || !issuer) {
      rows.push({
        check: "PSC discovery",
        verdict: "fail",
        detail: `${where}: HTTP ${res.status}${issuer ? "" : ", no issuer in the answer"}`,
      });
    } else {
      discovered = true;
      rows.push({
        check: "PSC discovery",
        verdict: "ok",
        detail: `${where} over mTLS${first ? ` as ${first.id}` : ""}: issuer ${issuer} (${res.ms} ms)`,
      });
    }
    if (res.date) {
      const skewS = (Date.parse(res.date) - (t0 + t1) / 2) / 1000;
      // The Date header has a one-second resolution: half a second either way is noise.
      const tolerance = config.psc.clockToleranceSeconds;
      const verdict: Verdict =
        Math.abs(skewS) > tolerance ? "fail" : Math.abs(skewS) > Math.max(2, tolerance / 2) ? "warn" : "ok";
      rows.push({
        check: "clock skew with PSC",
        verdict,
        detail: `${skewS >= 0 ? "+" : ""}${skewS.toFixed(1)} s (psc.clockToleranceSeconds ${tolerance}); ID tokens are checked against this clock`,
      });
    } else {
      rows.push({ check: "clock skew with PSC", verdict: "warn", detail: "PSC sent no Date header" });
    }
  } catch (err) {
    rows.push({ check: "PSC discovery", verdict: "fail", detail: `${where}: ${describeNetError(err)}` });
    rows.push({ check: "clock skew with PSC", verdict: "skip", detail: "PSC unreachable" });
  }
  if (!discovered) {
    for (const c of config.clients)
      rows.push({ check: `PSC accepts client ${c.id}`, verdict: "skip", detail: "PSC discovery failed" });
    return rows;
  }
  const log = createLogger("silent");
  let registry: Awaited<ReturnType<typeof createClientRegistry>> | undefined;
  try {
    registry = await createClientRegistry({
      config: { ...config, clients: config.clients.filter((c) => loads(c)) },
      log,
      identities: fileIdentities,
    });
  } catch (err) {
    for (const c of config.clients)
      rows.push({ check: `PSC accepts client ${c.id}`, verdict: "skip", detail: (err as Error).message });
    return rows;
  }
  const psc = createPscGateway(config, registry, log);
  try {
    for (const c of config.clients) {
      const check = `PSC accepts client ${c.id}`;
      if (!registry.identity(c.id)) {
        rows.push({ check, verdict: "skip", detail: "its certificate cannot be loaded" });
        continue;
      }
      try {
        // An invalid refresh token: PSC authenticates the client first, then refuses the grant.
        await withTimeout(
          psc.refresh(c.id, `eproxy-doctor-${randomBytes(8).toString("hex")}`),
          opts.timeoutMs,
        );
        rows.push({ check, verdict: "warn", detail: "PSC accepted an invalid refresh token" });
      } catch (err) {
        const code = err instanceof EproxyError ? err.code : undefined;
        if (code === "REAUTHENTICATION_REQUIRED" || code === "SESSION_INVALID") {
          rows.push({
            check,
            verdict: "ok",
            detail: `the token endpoint authenticated the client (${c.authMethod})`,
          });
        } else if (code === "PERMISSION_DENIED") {
          rows.push({
            check,
            verdict: "fail",
            detail: `PSC refused the client's credentials (invalid_client, ${c.authMethod})`,
          });
        } else {
          rows.push({
            check,
            verdict: "fail",
            detail: `token endpoint: ${describeNetError((err as Error).cause ?? err)}`,
          });
        }
      }
    }
  } finally {
    await psc.close().catch(() => {});
    registry.close();
  }
  return rows;
}

function loads(c: ClientConfig): boolean {
  try {
    clientMaterial(c);
    return true;
  } catch {
    return false;
  }
}

/** The mTLS peers of each teleservice: its token-exchange server and its upstream (handshake only). */
export async function teleserviceChecks(config: Readonly<Config>, opts: DoctorOptions): Promise<CheckRow[]> {
  const targets: { check: string; url: string; caFile: string | undefined; clientId: string | undefined }[] =
    [];
  for (const t of config.teleservices) {
    const client = config.clients.find((c) => c.allowedServices.includes(t.name)) ?? config.clients[0];
    if (t.tokenExchange) {
      targets.push({
        check: `teleservice ${t.name} token exchange`,
        url: t.tokenExchange.endpoint,
        caFile: t.caFile,
        clientId: client?.id,
      });
    }
    targets.push({
      check: `teleservice ${t.name} upstream`,
      url: t.upstreamUrl,
      caFile: t.caFile,
      clientId: client?.id,
    });
  }
  return Promise.all(
    targets.map(async ({ check, url, caFile, clientId }): Promise<CheckRow> => {
      const u = new URL(url);
      const c = config.clients.find((x) => x.id === clientId);
      if (!c) return { check, verdict: "skip", detail: "no client certificate to present" };
      try {
        const r = await tlsHandshake({
          host: u.hostname.replace(/^\[|\]$/g, ""),
          port: Number(u.port || 443),
          client: clientMaterial(c).tls,
          ...(caFile ? { ca: readFileSync(caFile, "utf8") } : {}),
          timeoutMs: opts.timeoutMs,
        });
        return {
          check,
          verdict: "ok",
          detail: `${u.host}: ${r.protocol} handshake as ${c.id} (${r.ms} ms); server certificate valid until ${day(r.serverValidTo)}`,
        };
      } catch (err) {
        return { check, verdict: "fail", detail: `${u.host}: ${describeNetError(err)}` };
      }
    }),
  );
}

/** Redis with its credentials and the key ring through it; MongoDB with its credentials. */
export async function storeChecks(config: Readonly<Config>, opts: DoctorOptions): Promise<CheckRow[]> {
  const rows: CheckRow[] = [];
  const s = config.stores.sessions;
  if (s.kind === "memory") {
    rows.push({
      check: "redis",
      verdict: "warn",
      detail: "sessions in process memory: one instance only, lost on restart",
    });
  } else {
    const u = new URL(s.url);
    const where = s.sentinel ? `sentinel ${s.sentinel.name}` : `${u.host}`;
    try {
      const ca = s.caFile ? readFileSync(s.caFile, "utf8") : undefined;
      const first = s.clusterNodes?.[0];
      const url = first
        ? `${u.protocol}//${u.username || u.password ? `${u.username}:${u.password}@` : ""}${first}${u.pathname}`
        : s.url;
      await withRedis({ ...s, url, ...(ca ? { ca } : {}) }, opts.timeoutMs, async (redis) => {
        const info = await redis.info("server");
        const version = /redis_version:(\S+)/.exec(info)?.[1] ?? "?";
        rows.push({
          check: "redis",
          verdict: "ok",
          detail: `${where}: reachable, authenticated (Redis ${version})`,
        });
        if (!config.stores.encryption) return;
        // The key ring: seal a value, store it under a short-lived doctor key, read it back, open it.
        const ring = loadKeyRing(config.stores.encryption, opts.env);
        const key = `${s.keyPrefix}doctor:${randomBytes(8).toString("hex")}`;
        const value = randomBytes(16).toString("hex");
        await redis.set(key, ring.seal(value, key), "PX", 30_000);
        const back = await redis.get(key);
        await redis.del(key);
        rows.push(
          back && ring.open(back, key) === value
            ? {
                check: "key ring",
                verdict: "ok",
                detail: `sealed and opened a value through Redis with key ${ring.activeKeyId}`,
              }
            : {
                check: "key ring",
                verdict: "fail",
                detail: "a value sealed with the active key did not open",
              },
        );
      });
    } catch (err) {
      const m = (err as Error).message;
      const detail = /WRONGPASS|NOAUTH|invalid password|invalid username-password/i.test(m)
        ? `${where}: authentication refused, wrong password or user (${m.split("\n")[0]})`
        : `${where}: ${describeNetError(err)}`;
      rows.push({ check: "redis", verdict: "fail", detail });
      if (config.stores.encryption)
        rows.push({ check: "key ring", verdict: "skip", detail: "Redis unreachable" });
    }
  }
  const mongo = config.stores.mongodbUrl;
  if (!mongo) {
    rows.push({
      check: "mongodb",
      verdict: "warn",
      detail:
        s.kind === "memory"
          ? "no MongoDB: traces in a local file, no client registry"
          : "no MongoDB with shared sessions: the trace store is per process (per replica), GET /traces answers one replica's share; set stores.mongodbUrl in production",
    });
  } else {
    const u = new URL(mongo);
    try {
      const { version } = await withTimeout(probeMongo(mongo, opts.timeoutMs), opts.timeoutMs * 2);
      rows.push({
        check: "mongodb",
        verdict: "ok",
        detail: `${u.host}${u.pathname}: reachable, ${u.username ? "authenticated" : "no credentials"} (${version})`,
      });
    } catch (err) {
      const m = (err as Error).message;
      rows.push({
        check: "mongodb",
        verdict: "fail",
        detail: /auth/i.test(m)
          ? `${u.host}: authentication refused (${m})`
          : `${u.host}: ${describeNetError(err)}`,
      });
    }
  }
  return rows;
}
