import { Readable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { Sessions } from "../../src/auth/sessions.ts";
import type { SessionRecord } from "../../src/auth/store.ts";
import { parseConfig } from "../../src/config.ts";
import { EproxyError } from "../../src/errors.ts";
import type { Upstream } from "../../src/relay/ports.ts";
import { createRelay, type RelayRequest } from "../../src/relay/relay.ts";
import type { TraceInput } from "../../src/trace/traces.ts";

const config = parseConfig(
  {
    server: { tls: { certFile: "server.pem", keyFile: "server-key.pem" } },
    psc: { discoveryUrl: "https://psc.example/.well-known/wallet-openid-configuration" },
    clients: [{ id: "lps-demo", certFile: "c.pem", keyFile: "k.pem", allowedServices: ["insi"] }],
    teleservices: [{ name: "insi", upstreamUrl: "https://ameli.example/lps" }],
  },
  {},
);
const caller = config.clients[0] as (typeof config.clients)[number];
const session = {
  id: "s-1",
  clientId: "lps-demo",
  professional: { nationalId: "899700218896" },
  psc: { sessionState: "ss-psc-1" },
} as SessionRecord;
const SOAP = '<S:Envelope xmlns:S="http://www.w3.org/2003/05/soap-envelope"><S:Body/></S:Envelope>';

/** A relay over a fake teleservice answering `answer` in `chunks` pieces, recording its traces. */
function relayAnswering(answer: Buffer, chunks = 4, status = 200) {
  const traces: TraceInput[] = [];
  const upstream: Upstream = {
    async post({ body }) {
      for await (const _ of body) {
        // The request body is read, as undici would.
      }
      const size = Math.ceil(answer.length / chunks);
      const parts = Array.from({ length: chunks }, (_, i) => answer.subarray(i * size, (i + 1) * size));
      return { status, headers: { "content-type": "application/soap+xml" }, body: Readable.from(parts) };
    },
    async close() {},
  };
  const relay = createRelay({
    config,
    sessions: {
      fresh: async () => session,
      freshCounted: async () => ({ rec: session }),
    } as unknown as Sessions,
    apiTokens: { get: async () => undefined },
    upstream,
    thumbprintOf: () => "",
    traces: { record: (e) => traces.push(e) },
    log: pino({ level: "silent" }),
  });
  const request = (over: Partial<RelayRequest> = {}): RelayRequest => ({
    caller,
    sessionToken: "eps_x",
    service: "insi",
    path: "//rechercherIns?trace=1",
    headers: { "content-type": 'application/soap+xml; action="urn:rechercher"' },
    body: Readable.from([Buffer.from(SOAP)]),
    ...over,
  });
  return { relay, traces, request };
}

describe("the relay records one SEND per call, whatever the transport", () => {
  it("read to the end: OK with duration, bytes both ways, the path without its query", async () => {
    const answer = Buffer.alloc(10_000, 1);
    const { relay, traces, request } = relayAnswering(answer);
    const out = await relay.forward(request());
    expect(traces).toEqual([]);
    let n = 0;
    for await (const c of out.body) n += c.length;
    expect(n).toBe(answer.length);
    expect(traces).toHaveLength(1);
    expect(traces[0]).toMatchObject({
      type: "SEND",
      clientId: "lps-demo",
      nationalId: "899700218896",
      sessionId: "s-1",
      // The conformity test reads PSC's session_state on the SEND, as on the login and the logout.
      sessionState: "ss-psc-1",
      service: "insi",
      method: "POST",
      path: "/rechercherIns",
      soapAction: "urn:rechercher",
      upstreamStatus: 200,
      bytesIn: Buffer.byteLength(SOAP),
      bytesOut: answer.length,
      outcome: "OK",
    });
    expect(traces[0]?.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("the caller stops reading (hung up): ABORTED, with the bytes it got", async () => {
    const { relay, traces, request } = relayAnswering(Buffer.alloc(4000, 1), 4);
    const out = await relay.forward(request());
    for await (const _ of out.body) break;
    expect(traces).toHaveLength(1);
    expect(traces[0]).toMatchObject({ outcome: "ABORTED", bytesOut: 1000 });
  });

  it("an answer over the transport's limit: PAYLOAD_TOO_LARGE for the caller and in the trace", async () => {
    const { relay, traces, request } = relayAnswering(Buffer.alloc(4000, 1), 4);
    const out = await relay.forward(request({ maxAnswerBytes: 2500, tooLargeHint: "use POST /send" }));
    const read = (async () => {
      for await (const _ of out.body) {
        // Read until the relay stops.
      }
    })();
    await expect(read).rejects.toThrow(
      expect.objectContaining({
        code: "PAYLOAD_TOO_LARGE",
        message: "answer larger than 2500 bytes: use POST /send",
      }),
    );
    expect(traces).toHaveLength(1);
    expect(traces[0]).toMatchObject({ outcome: "PAYLOAD_TOO_LARGE", bytesOut: 2000 });
  });

  it("refused before the teleservice is called: no SEND (the transport's refusal trace says why)", async () => {
    const { relay, traces, request } = relayAnswering(Buffer.alloc(10));
    await expect(relay.forward(request({ service: "dmp" }))).rejects.toBeInstanceOf(EproxyError);
    expect(traces).toEqual([]);
  });
});
