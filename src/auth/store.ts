/**
 * The store the authentication domain needs: sessions (keyed by the hash of their token, with a
 * per-professional index for reuse), and single-use transient records (code-flow state, one-time
 * codes, CIBA state), leases, shared counters, and notifications between replicas.
 * Implementations: memory (`infra/memory-store.ts`) and Redis (`infra/redis-store.ts`).
 */
import type { PscTokens } from "./psc-gateway.ts";

/** The professional's identity, mapped from PSC userinfo. */
export interface Professional {
  nationalId: string;
  givenName: string;
  familyName: string;
  exercises: Array<{
    professionCode: string;
    categoryCode: string;
    savoirFaireCode: string;
    activities: Array<{ structureId: string; sectorCode: string; structureName: string }>;
  }>;
  authMode: string;
}

/** A session as stored. Times are milliseconds since the epoch. */
export interface SessionRecord {
  /** SHA-256 of the session token (hex); the store key. */
  id: string;
  /** Owning client. */
  clientId: string;
  /** The professional. */
  professional: Professional;
  /** acr reached at PSC. */
  acr: string;
  /** PSC tokens (never leave volatile or TTL storage). */
  psc: PscTokens;
  /** Creation time. */
  createdAt: number;
  /** Hard end of the session. */
  absoluteExpiresAt: number;
  /** Incremented on every write of tokens; writes with a stale version are refused. */
  version: number;
  /** API tokens from token exchanges, by teleservice name (dropped with the session). */
  apiTokens?: Record<string, ApiToken>;
}

/** An API token obtained by RFC 8693 exchange for one teleservice. */
export interface ApiToken {
  /** The bearer sent to the teleservice. */
  token: string;
  /** Expiry (ms since epoch). */
  expiresAt: number;
  /** SHA-256 thumbprint of the client certificate it is bound to. */
  thumbprint: string;
}

/** A fixed-window counter's state. */
export interface WindowCount {
  count: number;
  /** End of the window (ms since epoch); 0 when no window is open. */
  resetAt: number;
}

/** A session looked up by `useSessionCounted`, with its count of uses in the current window. */
export interface SessionUse {
  session: SessionRecord;
  uses: WindowCount;
}

/** A held lease. */
export interface Lease {
  /** Extends the lease; false when it was lost (expired), rejects when the store is unreachable. */
  renew(): Promise<boolean>;
  /** Gives the lease back (only if still held). */
  release(): Promise<void>;
}

/**
 * Kinds of short-lived records: code-flow states and one-time codes (single use), and the shared
 * state of CIBA requests (request, pending index per professional, session token handed out once).
 */
export type TransientKind =
  | "codeflow-state"
  | "one-time-code"
  | "ciba-request"
  | "ciba-pending"
  | "ciba-token";

/** A notification's listener; `message` is what `notify` was given, if anything. */
export type NotifyListener = (message: string | undefined) => void;

/** Storage for the authentication domain. */
export interface AuthStore {
  /** Reads a live session (undefined when missing or idle-expired). */
  getSession(id: string): Promise<SessionRecord | undefined>;
  /** Idle expiry (ms since epoch) of a live session. */
  sessionIdleExpiry(id: string): Promise<number | undefined>;
  /**
   * Writes a session that lives `ttlMs` more (idle timeout, capped by the absolute end), only if the
   * stored version is `rec.version - 1` (or absent for version 1). Returns false on a conflict.
   */
  putSession(rec: SessionRecord, ttlMs: number): Promise<boolean>;
  /** Pushes back the idle expiry without touching the content. */
  touchSession(id: string, ttlMs: number): Promise<void>;
  /**
   * The session lookup of every call, as one store operation: reads a live session and pushes back
   * its idle expiry by `ttlMs` (capped by the absolute end, like `touchSession`). Undefined when
   * missing or idle-expired (nothing is touched then).
   */
  useSession(id: string, ttlMs: number): Promise<SessionRecord | undefined>;
  /**
   * `useSession` that also counts the call in a fixed window of `windowMs` kept with the session
   * (the misuse guard's relayed calls), so that the lookup of a relayed call and its count are one
   * store operation. The window starts with the first count and ends with the session at the
   * latest; a call on a missing session is not counted.
   */
  useSessionCounted(id: string, ttlMs: number, windowMs: number): Promise<SessionUse | undefined>;
  /** Deletes a session and its index entry. */
  deleteSession(id: string): Promise<void>;
  /** The live session of a client for a professional, if any. */
  findSessionId(clientId: string, nationalId: string): Promise<string | undefined>;
  /** Stores a single-use record. */
  putTransient(kind: TransientKind, key: string, value: unknown, ttlMs: number): Promise<void>;
  /** Reads and deletes a single-use record atomically. */
  takeTransient<T>(kind: TransientKind, key: string): Promise<T | undefined>;
  /** Reads a short-lived record without consuming it. */
  getTransient<T>(kind: TransientKind, key: string): Promise<T | undefined>;
  /** Deletes a short-lived record. */
  deleteTransient(kind: TransientKind, key: string): Promise<void>;
  /**
   * Takes a lease (a lock that expires after `ttlMs` unless renewed), or undefined when another
   * holder — possibly another replica — has it.
   */
  tryLease(name: string, ttlMs: number): Promise<Lease | undefined>;
  /**
   * Counts one event in a fixed window shared by every replica (the window starts with the first
   * event). Returns the count so far and when the window ends (ms since epoch).
   */
  hit(counter: string, windowMs: number): Promise<WindowCount>;
  /** The current count of a window, without counting (0 when none is open). */
  peek(counter: string): Promise<WindowCount>;
  /**
   * Wakes the subscribers of `topic` on every replica sharing the store, with an optional short
   * message. Delivery is at most once (pub/sub): subscribers re-read the state they follow, and
   * keep a long timeout of their own for a notification lost while the store was unreachable.
   */
  notify(topic: string, message?: string): Promise<void>;
  /**
   * Calls `listener` on every notification of `topic`, from this replica or another. Resolves
   * once the subscription is active, so that a state read after it misses no change; the
   * returned function unsubscribes.
   */
  subscribe(topic: string, listener: NotifyListener): Promise<() => void>;
  /** Resolves when the store answers. */
  ping(): Promise<void>;
  /** Live sessions, read at metrics scrape time (may scan); undefined when the store cannot count. */
  countSessions?(): Promise<number | undefined>;
  /** Releases connections and timers. */
  close(): Promise<void>;
}
