/**
 * What the relay needs from the outside world: an HTTP upstream over mTLS and an RFC 8693 token
 * endpoint. The undici adapter in `infra/upstream-undici.ts` implements both.
 */
import type { Readable } from "node:stream";
import type { TeleserviceConfig } from "../config.ts";

/** Headers as Node represents them (lowercase names). */
export type HeaderMap = Record<string, string | string[] | undefined>;

/** An upstream answer whose body is still streaming. */
export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  body: Readable;
}

/** Sends requests to teleservices with a client's certificate. */
export interface Upstream {
  /**
   * POSTs `body` to `url` with the client's certificate. Never retried once a body byte was sent;
   * retried once when the connection could not be established. Throws UPSTREAM_* EproxyErrors.
   */
  post(p: {
    clientId: string;
    teleservice: TeleserviceConfig;
    url: URL;
    headers: Record<string, string>;
    body: AsyncIterable<Uint8Array>;
    signal?: AbortSignal;
  }): Promise<UpstreamResponse>;
  /** Performs an RFC 8693 token exchange at the teleservice's authorization server. */
  exchange(p: {
    clientId: string;
    teleservice: TeleserviceConfig;
    subjectToken: string;
    signal?: AbortSignal;
  }): Promise<{ accessToken: string; expiresInSeconds: number }>;
  close(): Promise<void>;
}
