/**
 * What the sandbox console sees of eProxy, taken from the outside of its modules: the session store
 * and the trace store the sandbox hands to `createDeps` are wrapped (nothing in `serve` changes), and
 * the simulators' bodies are rendered for people. Sandbox only: bodies never leave this process.
 */
import type { AuthStore, SessionRecord } from "../../auth/store.ts";
import type { TraceEvent, TraceStore } from "../../trace/traces.ts";
import { parseMultipart } from "../teleservices.ts";

/** A trace store that also tells `onEvents` every batch it stores (the console's timeline). */
export function tapTraceStore(
  store: TraceStore,
  onEvents: (events: readonly TraceEvent[]) => void,
): TraceStore {
  return {
    async insertMany(events) {
      await store.insertMany(events);
      try {
        onEvents(events);
      } catch {
        // The console never disturbs the trace writer.
      }
    },
    query: (q) => store.query(q),
    ping: () => store.ping(),
    close: () => store.close(),
  };
}

/** A live session as the console shows it (no token). */
export interface SessionView {
  sessionHash: string;
  clientId: string;
  nationalId: string;
  name: string;
  acr: string;
  authMode: string;
  createdAt: number;
  /** When it ends if unused, and at the latest. */
  idleExpiresAt?: number;
  absoluteExpiresAt: number;
  /** When the PSC access token expires (refreshed before). */
  pscAccessExpiresAt: number;
  /** Teleservices with an exchanged API token. */
  apiTokens: string[];
}

/** A session store that remembers which sessions exist, so the console can list them. */
export function trackSessions(
  store: AuthStore,
  hashOf: (sessionId: string) => string,
): { store: AuthStore; list(): Promise<SessionView[]> } {
  const ids = new Set<string>();
  const tracked = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "putSession") {
        return (rec: SessionRecord, ttlMs: number) => {
          ids.add(rec.id);
          return target.putSession(rec, ttlMs);
        };
      }
      if (prop === "deleteSession") {
        return (id: string) => {
          ids.delete(id);
          return target.deleteSession(id);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return {
    store: tracked,
    async list() {
      const out: SessionView[] = [];
      for (const id of ids) {
        const rec = await store.getSession(id);
        if (!rec) {
          ids.delete(id);
          continue;
        }
        const idle = await store.sessionIdleExpiry(id);
        out.push({
          sessionHash: hashOf(id),
          clientId: rec.clientId,
          nationalId: rec.professional.nationalId,
          name: `${rec.professional.givenName} ${rec.professional.familyName}`.trim(),
          acr: rec.acr,
          authMode: rec.professional.authMode,
          createdAt: rec.createdAt,
          ...(idle !== undefined ? { idleExpiresAt: idle } : {}),
          absoluteExpiresAt: rec.absoluteExpiresAt,
          pscAccessExpiresAt: rec.psc.accessExpiresAt,
          apiTokens: Object.keys(rec.apiTokens ?? {}),
        });
      }
      return out.sort((a, b) => b.createdAt - a.createdAt);
    },
  };
}

/** Largest rendered body, in characters. */
const MAX_TEXT = 256 * 1024;

/** Indents XML for reading (tags, text, comments and CDATA kept as they are; nothing re-encoded). */
export function prettyXml(xml: string): string {
  const tokens = xml.match(/<!\[CDATA\[[\s\S]*?\]\]>|<!--[\s\S]*?-->|<[^>]+>|[^<]+/g) ?? [];
  const lines: string[] = [];
  let depth = 0;
  const pad = () => "  ".repeat(Math.max(0, depth));
  const isOpen = (t: string) => /^<[^/?!]/.test(t) && !t.endsWith("/>");
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as string;
    if (!t.startsWith("<")) {
      if (t.trim()) lines.push(pad() + t.trim());
      continue;
    }
    if (t.startsWith("</")) {
      depth--;
      lines.push(pad() + t);
      continue;
    }
    if (isOpen(t)) {
      const next = tokens[i + 1];
      const after = tokens[i + 2];
      // <a>text</a> and <a></a> stay on one line.
      if (next?.startsWith("</")) {
        lines.push(pad() + t + next);
        i += 1;
        continue;
      }
      const isText = next !== undefined && (!next.startsWith("<") || next.startsWith("<![CDATA["));
      if (isText && after?.startsWith("</")) {
        lines.push(pad() + t + (next as string).trim() + after);
        i += 2;
        continue;
      }
      lines.push(pad() + t);
      depth++;
      continue;
    }
    lines.push(pad() + t);
  }
  return lines.join("\n");
}

const SECRET_FIELDS = /^(subject_token|actor_token|client_secret|access_token|refresh_token|id_token|token)$/;

function printable(b: Buffer): boolean {
  const sample = b.subarray(0, 4096);
  let bad = 0;
  for (const c of sample) if (c < 9 || (c > 13 && c < 32)) bad++;
  return bad <= sample.length / 100;
}

function cap(text: string): string {
  return text.length > MAX_TEXT
    ? `${text.slice(0, MAX_TEXT)}\n… (${text.length - MAX_TEXT} more characters)`
    : text;
}

/**
 * A body as people read it: XML indented, MTOM parts split (attachments summarised), forms and JSON
 * with their tokens and secrets masked, binary summarised.
 */
export function renderBody(body: Buffer, contentType = ""): string {
  if (body.length === 0) return "";
  const ct = contentType.toLowerCase();
  if (ct.startsWith("multipart/")) {
    const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
    if (boundary) {
      try {
        const parts = parseMultipart(body, boundary);
        return cap(
          parts
            .map((p, n) => {
              const type = /content-type:\s*([^\r\n]+)/i.exec(p.headers)?.[1] ?? "";
              const shown =
                printable(p.body) && p.body.length <= MAX_TEXT
                  ? renderBody(p.body, type)
                  : `[${p.body.length} bytes${type ? ` of ${type}` : ""}]`;
              return `--- part ${n + 1}${type ? ` (${type})` : ""}\n${shown}`;
            })
            .join("\n"),
        );
      } catch {
        // Not well formed: shown as it is below.
      }
    }
  }
  if (!printable(body)) return `[${body.length} bytes of binary data]`;
  // A large body is shown by its beginning (a 64 MiB document is not indented in full).
  const cut = body.length > MAX_TEXT;
  const text = body.subarray(0, MAX_TEXT).toString("utf8");
  if (cut) return `${renderText(text, ct)}\n… (${body.length - MAX_TEXT} more bytes)`;
  return renderText(text, ct);
}

function renderText(text: string, ct: string): string {
  if (ct.includes("x-www-form-urlencoded")) {
    const form = new URLSearchParams(text);
    return [...form]
      .map(([k, v]) => `${k} = ${SECRET_FIELDS.test(k) ? `… (${v.length} characters, masked)` : v}`)
      .join("\n");
  }
  if (ct.includes("json")) {
    try {
      return cap(
        JSON.stringify(
          JSON.parse(text),
          (k, v) =>
            SECRET_FIELDS.test(k) && typeof v === "string" ? `… (${v.length} characters, masked)` : v,
          2,
        ),
      );
    } catch {
      return cap(text);
    }
  }
  if (/^\s*</.test(text) && !ct.includes("html")) return cap(prettyXml(text));
  return cap(text);
}
