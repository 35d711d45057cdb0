/**
 * Why did a server close the connection without answering? When a server refuses the client
 * certificate in a TLS 1.3 handshake, its alert arrives after the client already considers the
 * handshake done, and undici reports only "other side closed". One bounded TLS handshake with the
 * same identity, reading the first record, surfaces the alert (e.g. `UNKNOWN_CA`) so that the
 * failure is classified as a credentials problem rather than the server being down.
 */
import tls from "node:tls";
import { peerRefusedCertificate } from "./foreign-errors.ts";

/** The alert by which `url`'s server refuses this TLS identity, or undefined (accepted, or unknown). */
export function certificateRefusal(
  url: string,
  options: tls.ConnectionOptions,
  timeoutMs = 3_000,
): Promise<string | undefined> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = tls.connect({
      ...options,
      host: u.hostname,
      port: Number(u.port || 443),
      servername: u.hostname,
      ALPNProtocols: ["http/1.1"],
    });
    const done = (alert: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(alert);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    timer.unref();
    // A request, so that a server that accepted answers (and one that refused sends its alert).
    socket.once("secureConnect", () =>
      socket.write(`HEAD / HTTP/1.1\r\nhost: ${u.host}\r\nconnection: close\r\n\r\n`),
    );
    socket.once("data", () => done(undefined));
    socket.once("error", (err) => done(peerRefusedCertificate(err)));
    socket.once("close", () => done(undefined));
  });
}
