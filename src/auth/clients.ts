/**
 * The clients eProxy serves: those of the configuration file, plus those registered in MongoDB with
 * `eproxy clients ...`. The configuration wins when both define the same id. Stored clients are
 * reloaded every `stores.clientsRefreshSeconds`, so a disabled client or a rotated API key takes
 * effect on every replica without a restart.
 */
import type { Logger } from "pino";
import type { ClientConfig, Config } from "../config.ts";
import { hashApiKey, matchesApiKeyHash } from "./api-keys.ts";

/** The TLS material of one client, ready for an undici Agent or tls.connect. */
export interface ClientIdentity {
  /** Client id (certificate CN). */
  clientId: string;
  /** Options for tls.connect. */
  tls: { cert: string; key: string } | { pfx: Buffer; passphrase: string };
  /** Subject DN of the certificate, for traces. */
  subjectDn?: string;
  /** SHA-256 thumbprint of the certificate (base64url), as in `cnf.x5t#S256`. */
  thumbprint?: string;
}

/** Finds enabled clients and their TLS identities (implemented by the client registry). */
export interface ClientLookup {
  get(id: string): ClientConfig | undefined;
  identity(id: string): ClientIdentity | undefined;
}

/** Reads client certificates (implemented by `infra/client-tls.ts`); throws when unusable. */
export interface IdentityReader {
  /** The identity of a client whose certificate is referenced by path (PEM files or PKCS#12). */
  load(c: ClientConfig): ClientIdentity;
  /** The identity of a PEM certificate chain and its private key. */
  fromPem(clientId: string, certPem: string, keyPem: string): ClientIdentity;
}

/** Opens sealed values (implemented by the encryption key ring). */
export interface Unsealer {
  /** The plaintext, or undefined when no key of the ring opens it. */
  open(sealed: string, aad: string): string | undefined;
}

/** A client as stored in the registry (MongoDB). */
export interface StoredClient extends ClientConfig {
  /** A disabled client authenticates nothing; its sessions cannot be used. */
  disabled: boolean;
  /** Certificate chain (PEM) when the certificate is stored rather than referenced by path. */
  certPem?: string;
  /** Private key (PEM) sealed with the encryption key ring, bound to the client id. */
  keySealed?: string;
  /** Creation and last change (ms since epoch). */
  createdAt: number;
  updatedAt: number;
}

/** Where stored clients live. */
export interface ClientSource {
  /** Every stored client, disabled ones included. */
  list(): Promise<StoredClient[]>;
  /** One stored client. */
  get(id: string): Promise<StoredClient | undefined>;
  /** Inserts a client; false when the id is taken. */
  insert(c: StoredClient): Promise<boolean>;
  /** Changes fields of a client; false when it does not exist. */
  update(id: string, change: Partial<Omit<StoredClient, "id" | "createdAt">>): Promise<boolean>;
  /** Resolves when the store answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Additional authenticated data that binds a sealed private key to its client. */
export function clientKeyAad(id: string): string {
  return `eproxy-client-key:${id}`;
}

/** Where a client comes from. */
export type ClientOrigin = "config" | "mongodb";

/** The clients, as the request path sees them (synchronous lookups on a snapshot). */
export interface ClientRegistry extends ClientLookup {
  /** An enabled client by id. */
  get(id: string): ClientConfig | undefined;
  /** The enabled client an API key belongs to (every client compared, in constant time). */
  byApiKey(key: string): ClientConfig | undefined;
  /** TLS identity of an enabled client. */
  identity(id: string): ClientIdentity | undefined;
  /** Every enabled client with its origin. */
  list(): { client: ClientConfig; origin: ClientOrigin }[];
  /** Reloads the stored clients now. */
  refresh(): Promise<void>;
  /** Stops the periodic reload. */
  close(): void;
}

interface Entry {
  client: ClientConfig;
  origin: ClientOrigin;
  identity: ClientIdentity;
  /** Fingerprint of the TLS material, to keep identities (and their connection pools) stable. */
  material: string;
}

/** Builds the registry; with a source, loads it once before returning. */
export async function createClientRegistry(deps: {
  config: Readonly<Config>;
  log: Logger;
  identities: IdentityReader;
  source?: ClientSource;
  /** Opens the private keys of stored clients. */
  keyRing?: Unsealer;
}): Promise<ClientRegistry> {
  const { config, log, identities, source, keyRing } = deps;
  const fromConfig = new Map<string, Entry>(
    config.clients.map((c) => [
      c.id,
      { client: c, origin: "config", identity: identities.load(c), material: "config" },
    ]),
  );
  let snapshot = new Map(fromConfig);

  function toEntry(s: StoredClient, previous: Entry | undefined): Entry | undefined {
    const material = s.certPem
      ? `pem:${s.certPem.length}:${s.keySealed}`
      : `file:${s.certFile}:${s.keyFile}:${s.pkcs12File}:${s.updatedAt}`;
    if (previous?.origin === "mongodb" && previous.material === material) {
      return { ...previous, client: publicPart(s) };
    }
    try {
      let identity: ClientIdentity;
      if (s.certPem) {
        const key = s.keySealed && keyRing ? keyRing.open(s.keySealed, clientKeyAad(s.id)) : undefined;
        if (!key) throw new Error("its private key cannot be opened (no key ring, or its key is retired)");
        identity = identities.fromPem(s.id, s.certPem, key);
      } else identity = identities.load(s);
      return { client: publicPart(s), origin: "mongodb", identity, material };
    } catch (err) {
      log.error(
        { clientId: s.id, err: (err as Error).message },
        "stored client skipped: unusable certificate",
      );
      return undefined;
    }
  }

  async function refresh(): Promise<void> {
    if (!source) return;
    const stored = await source.list();
    const next = new Map(fromConfig);
    for (const s of stored) {
      if (s.disabled) continue;
      if (fromConfig.has(s.id)) {
        log.warn(
          { clientId: s.id },
          "client defined in the configuration and in MongoDB: the configuration wins",
        );
        continue;
      }
      const e = toEntry(s, snapshot.get(s.id));
      if (e) next.set(s.id, e);
    }
    snapshot = next;
  }

  let timer: NodeJS.Timeout | undefined;
  if (source) {
    await refresh().catch((err: unknown) =>
      log.error(
        { err: (err as Error).message },
        "client registry unreachable: configuration clients only for now",
      ),
    );
    timer = setInterval(() => {
      refresh().catch((err: unknown) =>
        log.warn(
          { err: (err as Error).message },
          "client registry reload failed; keeping the last known clients",
        ),
      );
    }, config.stores.clientsRefreshSeconds * 1000);
    timer.unref();
  }

  return {
    get: (id) => snapshot.get(id)?.client,
    identity: (id) => snapshot.get(id)?.identity,
    byApiKey(key) {
      const hash = hashApiKey(key);
      let found: ClientConfig | undefined;
      for (const e of snapshot.values())
        if (matchesApiKeyHash(hash, e.client.apiKeyHashes)) found ??= e.client;
      return found;
    },
    list: () => [...snapshot.values()].map((e) => ({ client: e.client, origin: e.origin })),
    refresh,
    close() {
      if (timer) clearInterval(timer);
    },
  };
}

/** The ClientConfig part of a stored client (no key material). */
function publicPart(s: StoredClient): ClientConfig {
  const { disabled: _d, certPem: _c, keySealed: _k, createdAt: _a, updatedAt: _u, ...client } = s;
  return Object.freeze(client);
}
