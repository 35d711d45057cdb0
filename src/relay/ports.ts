/**
 * What the relay needs from the outside world: an HTTP upstream over mTLS
 * (`infra/upstream-undici.ts`) and an RFC 8693 token exchange (`infra/token-exchange-openid.ts`).
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
    /** A stream, or the whole body when it is already in memory (sent with its headers in one write). */
    body: AsyncIterable<Uint8Array> | Uint8Array;
    signal?: AbortSignal;
  }): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

/** An API token obtained by exchange. */
export interface ExchangedToken {
  accessToken: string;
  /** Lifetime the authorization server announced (3600 when it said nothing). */
  expiresInSeconds: number;
}

/** Turns a PSC access token into a teleservice's API token (RFC 8693), with the client's certificate. */
export interface TokenExchange {
  /**
   * Performs the exchange at the teleservice's authorization server. Throws
   * REAUTHENTICATION_REQUIRED when the server refuses the PSC token (`invalid_grant`),
   * UPSTREAM_UNAVAILABLE / UPSTREAM_TIMEOUT when it cannot answer, UPSTREAM_BAD_RESPONSE otherwise.
   */
  exchange(p: {
    clientId: string;
    teleservice: TeleserviceConfig;
    subjectToken: string;
  }): Promise<ExchangedToken>;
}
