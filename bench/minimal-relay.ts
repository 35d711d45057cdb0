/**
 * The floor of this workload on Node: a minimal relay with none of eProxy's work (no caller or
 * session check, no token, no trace, no log line), the same listener options and the same undici
 * client to the same mTLS upstream. `BENCH_EPROXY_BIN=bench/minimal-relay.ts BENCH_FRONTS=eProxy
 * npm run bench:compare` measures it in eProxy's place, and bench:compare runs it beside eProxy as the
 * `floor` front (it reads the same configuration file: `/send/<teleservice>/<path>` goes to that
 * teleservice's upstream, anything else to insi). `MINIMAL_RELAY` adds eProxy's
 * stream stages one by one (comma list): `abort` (an AbortController given to undici), `race`
 * (the request body failing on abort), `peek` (the body read whole first), `generator` (the answer
 * through an async generator stage), `iterator` (the same stage as a plain iterator object). It is
 * how the async generator stages were found to make ~14 % of each call's allocations survive
 * young-generation collections (bench/README.md).
 */
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { Agent, type Dispatcher } from "undici";

interface BenchConfigFile {
  server: { port: number; listenAddress: string; tls: { certFile: string; keyFile: string } };
  clients: Array<{ certFile: string; keyFile: string }>;
  teleservices: Array<{ name: string; upstreamUrl: string; caFile: string }>;
}

const file = process.argv[process.argv.indexOf("--config") + 1] ?? "";
const cfg = JSON.parse(readFileSync(file, "utf8")) as BenchConfigFile;
const stages = new Set((process.env.MINIMAL_RELAY ?? "").split(","));
const insi = cfg.teleservices.find((t) => t.name === "insi");
const client = cfg.clients[0];
if (!insi || !client) throw new Error("no insi teleservice or client in the configuration");
const agents = new Map<string, Agent>();
function agentFor(t: { upstreamUrl: string; caFile: string }): Agent {
  const origin = new URL(t.upstreamUrl).origin;
  let a = agents.get(origin);
  if (!a) {
    a = new Agent({
      connect: {
        cert: readFileSync((client as { certFile: string }).certFile),
        key: readFileSync((client as { keyFile: string }).keyFile),
        ca: readFileSync(t.caFile),
      },
      pipelining: 1,
      connections: 64,
    });
    agents.set(origin, a);
  }
  return a;
}
const byName = new Map(cfg.teleservices.map((t) => [t.name, t]));

/** The upstream of a request path: `/send/<teleservice>/<rest>`, or insi. */
function target(url: string): { agent: Agent; origin: string; path: string } {
  const m = /^\/send\/([^/?]+)(\/[^?]*)?/.exec(url);
  const t = (m && byName.get(m[1] as string)) || (insi as (typeof cfg.teleservices)[number]);
  const base = new URL(t.upstreamUrl);
  const rest = t === insi ? "" : (m?.[2] ?? "");
  return {
    agent: agentFor(t),
    origin: base.origin,
    path: `${base.pathname.replace(/\/+$/, "")}${rest}` || "/",
  };
}

function untilAborted(body: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      const it = body[Symbol.asyncIterator]();
      let onAbort = () => {};
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(new Error("aborted"));
        signal.addEventListener("abort", onAbort, { once: true });
      });
      aborted.catch(() => {});
      return {
        next: () => Promise.race([it.next(), aborted]),
        async return() {
          signal.removeEventListener("abort", onAbort);
          await it.return?.();
          return { done: true as const, value: undefined };
        },
      };
    },
  };
}

async function readAll(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of source) chunks.push(c);
  return Buffer.concat(chunks);
}

async function relay(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): Promise<void> {
  if (req.url === "/healthz") {
    res.end("ok");
    return;
  }
  if (req.url.startsWith("/oauth2/ciba")) {
    await readAll(req);
    res.end(JSON.stringify({ session: { sessionToken: "none", pscTokens: { accessToken: "none" } } }));
    return;
  }
  const abort = new AbortController();
  if (stages.has("abort")) res.once("close", () => res.writableFinished || abort.abort());
  let body: AsyncIterable<Uint8Array> | Buffer = req;
  if (stages.has("race")) body = untilAborted(req, abort.signal);
  if (stages.has("peek")) body = await readAll(body);
  const to = target(req.url);
  const options: Dispatcher.RequestOptions = {
    origin: to.origin,
    path: to.path,
    method: "POST",
    // The caller's Authorization goes upstream as it is (the floor front is given the API token).
    headers: {
      "content-type": req.headers["content-type"] ?? "application/soap+xml",
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    },
    // undici takes any async iterable of chunks (its types name only Readable).
    body: body as Dispatcher.RequestOptions["body"],
    ...(stages.has("abort") ? { signal: abort.signal } : {}),
  };
  const r = await to.agent.request(options);
  res.writeHead(r.statusCode, { "content-type": String(r.headers["content-type"]) });
  let answer: AsyncIterable<Buffer> = r.body;
  if (stages.has("generator")) {
    const source = r.body;
    answer = (async function* () {
      for await (const c of source) yield c as Buffer;
    })();
  } else if (stages.has("iterator")) {
    const it = r.body[Symbol.asyncIterator]();
    answer = {
      [Symbol.asyncIterator]: () => ({
        next: () => it.next(),
        async return() {
          await it.return?.();
          return { done: true as const, value: undefined };
        },
      }),
    };
  }
  for await (const c of answer) res.write(c);
  res.end();
}

const server = http2.createSecureServer(
  {
    cert: readFileSync(cfg.server.tls.certFile),
    key: readFileSync(cfg.server.tls.keyFile),
    allowHTTP1: true,
    noDelay: true,
  } as http2.SecureServerOptions,
  (req, res) => {
    relay(req, res).catch(() => res.destroy());
  },
);
server.listen(cfg.server.port, cfg.server.listenAddress);
process.on("SIGTERM", () => process.exit(0));
