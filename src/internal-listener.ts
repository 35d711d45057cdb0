/**
 * The in-network listener: cleartext HTTP/1.1 and h2c (HTTP/2 with prior knowledge, what gRPC
 * clients send on http://) on one port, for modules inside a private network that cannot do TLS
 * (the toolbox's DMP and INS modules). It serves the same handler as the HTTPS listener; with no
 * TLS there is no client certificate, so callers authenticate with an API key only.
 */
import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo, BlockList, isIP, type Socket } from "node:net";
import type { Logger } from "pino";

/** The HTTP/2 connection preface starts with these bytes (RFC 9113 §3.4). */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Addresses that stay inside a site: loopback, RFC 1918, CGNAT, link-local, IPv6 ULA. */
const PRIVATE = new BlockList();
PRIVATE.addSubnet("127.0.0.0", 8, "ipv4");
PRIVATE.addSubnet("10.0.0.0", 8, "ipv4");
PRIVATE.addSubnet("172.16.0.0", 12, "ipv4");
PRIVATE.addSubnet("192.168.0.0", 16, "ipv4");
PRIVATE.addSubnet("100.64.0.0", 10, "ipv4");
PRIVATE.addSubnet("169.254.0.0", 16, "ipv4");
PRIVATE.addAddress("::1", "ipv6");
PRIVATE.addSubnet("fc00::", 7, "ipv6");
PRIVATE.addSubnet("fe80::", 10, "ipv6");

/**
 * Why an address is not a safe place for a cleartext listener: "wildcard" (every interface),
 * "public", or undefined when it is private.
 */
export function exposureOf(address: string): "wildcard" | "public" | undefined {
  const a = address.replace(/^::ffff:(?=\d+\.)/, "");
  if (a === "0.0.0.0" || a === "::" || a === "") return "wildcard";
  const family = isIP(a);
  if (family === 0) return "public";
  return PRIVATE.check(a, family === 4 ? "ipv4" : "ipv6") ? undefined : "public";
}

/** A running in-network listener. */
export interface InternalListener {
  /** Bound port. */
  port: number;
  /** `http://address:port`. */
  url: string;
  /** Stops accepting; in-flight requests get `graceMs` to finish. */
  close(graceMs: number): Promise<void>;
}

/** Options of the in-network listener. */
export interface InternalListenerOptions {
  listenAddress: string;
  port: number;
  /** The request handler shared with the HTTPS listener. */
  onRequest: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;
  /** HTTP/2 settings (header list size, stream window) as on the HTTPS listener. */
  settings: http2.Settings;
  maxHeaderBytes: number;
  log: Logger;
}

/** Starts the in-network listener; warns when it is bound to a public or wildcard address. */
export async function startInternalListener(opts: InternalListenerOptions): Promise<InternalListener> {
  const handler = opts.onRequest as unknown as http.RequestListener;
  const h2 = http2.createServer({ settings: opts.settings, maxSessionMemory: 64 }, opts.onRequest);
  const h1 = http.createServer({ maxHeaderSize: opts.maxHeaderBytes }, handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  // One port for both: the first bytes say which protocol (h2c starts with the connection preface).
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    // A connection that never says anything is not kept (the HTTP servers' own timeouts start later).
    socket.setTimeout(30_000, () => socket.destroy());
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const h2c = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (h2c && n < H2_PREFACE.length) return;
      socket.off("data", onData);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
      if (h2c) {
        // The HTTP/2 session reads what is already buffered on the socket, then consumes its handle.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.listenAddress, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const exposure = exposureOf(address);
  if (exposure) {
    opts.log.warn(
      { address, port, exposure },
      `in-network listener (cleartext, API keys only) bound to a ${exposure} address: anyone who reaches it ` +
        "calls eProxy without TLS; bind server.internalListener.listenAddress to a private address",
    );
  }
  opts.log.info({ address, port }, "eProxy in-network listener (cleartext HTTP/1.1 and h2c, API keys only)");
  const host = address.includes(":") ? `[${address}]` : address;
  return {
    port,
    url: `http://${host}:${port}`,
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close();
      h1.closeIdleConnections();
      const grace = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      grace.unref();
      await closed;
      clearTimeout(grace);
    },
  };
}
