import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CibaStatus } from "../../gen/eproxy/v1/auth_pb.ts";
import { type AuthEnv, cibaLogin, DOCTOR, NURSE, PHARMACIST, startAuthEnv } from "../support/auth-env.ts";
import { startRedis, type TestServerProcess } from "../support/servers.ts";

const redisUrl = inject("redisUrl");

async function login(env: AuthEnv, nationalId: string): Promise<string> {
  return cibaLogin(env.auth(), nationalId);
}

describe.skipIf(!redisUrl)("two replicas sharing one Redis", () => {
  let env: AuthEnv;
  let replicaUrl: string;
  beforeAll(async () => {
    // PSC access tokens of 30 s with a 30 s margin: every use needs a refresh.
    env = await startAuthEnv({
      redisUrl,
      psc: { accessTokenTtlSeconds: 30 },
      sessions: { refreshBeforeExpirySeconds: 30 },
    });
    replicaUrl = await env.replica();
  });
  afterAll(async () => {
    await env?.close();
  });

  it("a CIBA request started on one replica is followed on the other; its session token is handed out once", async () => {
    env.psc.settings.autoApproveMs = null;
    try {
      const a = env.auth();
      const b = env.auth("lps-demo", "grpc", replicaUrl);
      const started = await a.startCiba({ nationalId: PHARMACIST, bindingMessage: "07" });
      // The other replica knows it, and does not push again for the same professional.
      expect((await b.pollCiba({ authReqId: started.authReqId })).status).toBe(CibaStatus.PENDING);
      const again = await b.startCiba({ nationalId: PHARMACIST });
      expect(again.reused).toBe(true);
      expect(again.authReqId).toBe(started.authReqId);
      expect(env.psc.stats.cibaRequests).toBeGreaterThanOrEqual(1);
      const pushes = env.psc.stats.cibaRequests;

      let saidPending: () => void = () => {};
      const pendingSaid = new Promise<void>((resolve) => {
        saidPending = resolve;
      });
      const watched = (async () => {
        const states = [];
        for await (const m of b.watchCiba({ authReqId: started.authReqId })) {
          states.push(m);
          saidPending();
        }
        return states;
      })();
      // Approved once the stream has said PENDING (or ended: then the assertion below says why).
      await Promise.race([pendingSaid, watched]);
      await env.psc.approve(env.psc.pending().find((p) => p.nationalId === PHARMACIST)?.authReqId as string);
      const states = await watched;
      expect(states.map((m) => m.status)).toEqual([CibaStatus.PENDING, CibaStatus.APPROVED]);
      const token = states.at(-1)?.session?.sessionToken as string;
      expect(token).toMatch(/^eps_/);
      // Handed out once, whichever replica is asked next.
      expect((await a.pollCiba({ authReqId: started.authReqId })).session?.sessionToken).toBe("");
      expect((await b.pollCiba({ authReqId: started.authReqId })).session?.sessionToken).toBe("");
      expect(env.psc.stats.cibaRequests).toBe(pushes);
      await a.logout({ sessionToken: token });
    } finally {
      env.psc.settings.autoApproveMs = 200;
    }
  });

  it("concurrent StartCiba calls for one professional, split between replicas, push once", async () => {
    env.psc.settings.autoApproveMs = null;
    try {
      const before = env.psc.stats.cibaRequests;
      const a = env.auth();
      const b = env.auth("lps-demo", "grpc", replicaUrl);
      const started = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? a : b).startCiba({ nationalId: DOCTOR, bindingMessage: "09" }),
        ),
      );
      expect(env.psc.stats.cibaRequests - before).toBe(1);
      expect(new Set(started.map((s) => s.authReqId)).size).toBe(1);
      await env.psc.deny(env.psc.pending().find((p) => p.nationalId === DOCTOR)?.authReqId as string);
      for await (const m of a.watchCiba({ authReqId: started[0]?.authReqId as string })) void m;
    } finally {
      env.psc.settings.autoApproveMs = 200;
    }
  });

  it("when the replica polling a CIBA request stops, another one takes over", async () => {
    env.psc.settings.autoApproveMs = null;
    const doomed = await env.startReplica();
    try {
      const started = await env
        .auth("lps-demo", "grpc", doomed.url)
        .startCiba({ nationalId: NURSE, bindingMessage: "08" });
      await doomed.close();
      const polls = () => Object.values(env.psc.stats.cibaPolls).reduce((n, x) => n + x.length, 0);
      const before = polls();
      const a = env.auth();
      expect((await a.pollCiba({ authReqId: started.authReqId })).status).toBe(CibaStatus.PENDING);
      // The surviving replica polls PSC from now on.
      await expect.poll(polls, { timeout: 5_000 }).toBeGreaterThan(before);
      await env.psc.approve(env.psc.pending().find((p) => p.nationalId === NURSE)?.authReqId as string);
      let last: any;
      for await (const m of a.watchCiba({ authReqId: started.authReqId })) last = m;
      expect(last.status).toBe(CibaStatus.APPROVED);
      expect(last.session.sessionToken).toMatch(/^eps_/);
      await a.logout({ sessionToken: last.session.sessionToken });
    } finally {
      env.psc.settings.autoApproveMs = 200;
    }
  });

  it("a replica that drains hands its CIBA requests over at once and ends WatchCiba with unavailable", async () => {
    env.psc.settings.autoApproveMs = null;
    const doomed = await env.startReplica();
    try {
      const started = await env
        .auth("lps-demo", "grpc", doomed.url)
        .startCiba({ nationalId: PHARMACIST, bindingMessage: "10" });
      let open = 0;
      const watch = async (protocol: "grpc" | "connect") => {
        const seen: CibaStatus[] = [];
        try {
          for await (const m of env
            .auth("lps-demo", protocol, doomed.url)
            .watchCiba({ authReqId: started.authReqId })) {
            seen.push(m.status);
            open++;
          }
          return { seen, err: undefined };
        } catch (e) {
          return { seen, err: ConnectError.from(e) };
        }
      };
      const watches = Promise.all([watch("grpc"), watch("connect")]);
      // Both streams are open (they have said PENDING) before the replica stops.
      await expect.poll(() => open, { timeout: 10_000 }).toBe(2);
      await doomed.close();
      // Connect's retry signal, not a stream cut at the grace period ("incomplete envelope").
      for (const w of await watches) {
        expect(w.seen).toEqual([CibaStatus.PENDING]);
        expect(w.err?.code).toBe(Code.Unavailable);
      }
      const polls = () =>
        env.psc.stats.cibaPolls[env.psc.pending().find((p) => p.nationalId === PHARMACIST)?.authReqId ?? ""]
          ?.length ?? 0;
      const before = polls();
      // Nobody asks the surviving replicas: one takes over on the hand-over notification, long
      // before the 30 s lease of the stopped replica would have expired.
      await expect.poll(polls, { timeout: 5_000 }).toBeGreaterThan(before);
      await env.psc.approve(env.psc.pending().find((p) => p.nationalId === PHARMACIST)?.authReqId as string);
      let last: any;
      for await (const m of env.auth().watchCiba({ authReqId: started.authReqId })) last = m;
      expect(last.status).toBe(CibaStatus.APPROVED);
      await env.auth().logout({ sessionToken: last.session.sessionToken });
    } finally {
      env.psc.settings.autoApproveMs = 200;
    }
  });

  it("a session created on one replica is usable on the other", async () => {
    const token = await login(env, DOCTOR);
    const got = await env.auth("lps-demo", "grpc", replicaUrl).getSession({ sessionToken: token });
    expect(got.session?.professional?.nationalId).toBe(DOCTOR);
    await env.auth().logout({ sessionToken: token });
  });

  it("50 concurrent calls split between the replicas make exactly one PSC refresh", async () => {
    const token = await login(env, DOCTOR);
    env.psc.reset();
    const a = env.auth();
    const b = env.auth("lps-demo", "grpc", replicaUrl);
    const calls = Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).getSession({ sessionToken: token }));
    const results = await Promise.all(calls);
    expect(results.every((r) => r.session?.professional?.nationalId === DOCTOR)).toBe(true);
    expect(env.psc.stats.refreshes).toBe(1);
    await a.logout({ sessionToken: token });
  });

  it("50 concurrent relays split between the replicas make exactly one token exchange", async () => {
    const token = await login(env, DOCTOR);
    env.tele.reset();
    const body =
      '<?xml version="1.0"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body/></soap:Envelope>';
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 2
          ? env.http("POST", "/send/dmp/registry", {
              headers: {
                "x-eproxy-api-key": env.keys["lps-demo"],
                authorization: `Bearer ${token}`,
                "content-type": "application/soap+xml",
              },
              body: body,
            })
          : relayVia(replicaUrl, token, body),
      ),
    );
    expect(answers.every((x) => x.status === 200)).toBe(true);
    expect(env.tele.stats.exchanges).toBe(1);
    await env.auth().logout({ sessionToken: token });
  });

  async function relayVia(base: string, token: string, body: string): Promise<{ status: number }> {
    const https = await import("node:https");
    return new Promise((resolve, reject) => {
      const req = https.request(
        `${base}/send/dmp/registry`,
        {
          method: "POST",
          ca: env.ca,
          agent: false,
          headers: {
            "x-eproxy-api-key": env.keys["lps-demo"],
            authorization: `Bearer ${token}`,
            "content-type": "application/soap+xml",
          },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  it("keeps no PSC or API token in clear in Redis", async () => {
    const token = await login(env, DOCTOR);
    const raw = new Redis(redisUrl);
    // This environment's keys only: other test files share the server.
    const sessionsCfg = env.deps.config.stores.sessions;
    const prefix = sessionsCfg.kind === "redis" ? sessionsCfg.keyPrefix : "";
    try {
      const keys = await raw.keys(`${prefix}*`);
      expect(keys.length).toBeGreaterThan(0);
      let dump = keys.join("\n");
      for (const k of keys) {
        const t = await raw.type(k);
        dump += t === "hash" ? JSON.stringify(await raw.hgetall(k)) : String(await raw.get(k));
      }
      expect(dump).not.toContain(token);
      expect(dump).not.toContain(DOCTOR);
      // No JSON field of a token record, and no JWT (header.payload, both base64url JSON); sealed
      // values are random base64url, so a lone "eyJ" may occur by chance.
      expect(dump).not.toMatch(/"accessToken"|eyJ[\w-]+\.eyJ/);
    } finally {
      raw.disconnect();
    }
  });
});

describe.skipIf(!redisUrl)("Redis outage", () => {
  let own: TestServerProcess;
  let env: AuthEnv;
  beforeAll(async () => {
    own = await startRedis(inject("redisBin"), mkdtempSync(path.join(tmpdir(), "eproxy-redis-")));
    env = await startAuthEnv({ redisUrl: own.url });
  });
  afterAll(async () => {
    await env?.close();
    await own?.stop();
  });

  it("answers UNAVAILABLE and turns /readyz red while Redis is down, then recovers by itself", async () => {
    const token = await login(env, DOCTOR);
    await own.stop();
    const err = (await env
      .auth()
      .getSession({ sessionToken: token })
      .catch((e: unknown) => e)) as ConnectError;
    expect(err.code).toBe(Code.Unavailable);
    expect(err.metadata.get("x-eproxy-error")).toBe("STORE_UNAVAILABLE");
    const red = await env.http("GET", "/readyz");
    expect(red.status).toBe(503);
    expect(red.json().checks.sessionStore).toBe("unavailable");
    await own.restart();
    await expect
      .poll(async () => (await env.http("GET", "/readyz")).status, { timeout: 20_000, interval: 100 })
      .toBe(200);
    // Without persistence the session is gone: the caller is told it was lost (re-authenticate),
    // not that it expired, and a new login works.
    const after = (await env
      .auth()
      .getSession({ sessionToken: token })
      .catch((e: unknown) => e)) as ConnectError;
    expect(after.metadata.get("x-eproxy-error")).toBe("REAUTHENTICATION_REQUIRED");
    expect(after.rawMessage).toMatch(/lost/);
    const fresh = await login(env, DOCTOR);
    await env.auth().getSession({ sessionToken: fresh });
  }, 60_000);
});
