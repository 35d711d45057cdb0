/**
 * The trace spool's on-disk format: an append-only file of framed records, one a line,
 * `T1 <payload bytes> <crc32, 8 hex> <JSON>\n`. A record is taken only when its length and checksum
 * match, so a record torn by a crash mid-write, or damaged on disk, is skipped and counted instead
 * of stopping the replay. Lines of the previous format (bare JSON lines, before the framing) are
 * still read, so a spool left by an older eProxy is replayed after an upgrade.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { crc32 } from "node:zlib";
import type { TraceEvent } from "./traces.ts";

const NL = 0x0a;
const HEADER = /^T1 (\d{1,9}) ([0-9a-f]{8}) /;

/** One framed record (a line of the spool). */
export function frameRecord(e: TraceEvent): string {
  // JSON.stringify escapes line breaks: a record never spans two lines, a line is the resync unit.
  const json = JSON.stringify(e);
  const payload = Buffer.from(json);
  return `T1 ${payload.length} ${crc32(payload).toString(16).padStart(8, "0")} ${json}\n`;
}

/** Decodes one line (without its newline): the event, or undefined when it is torn or corrupt. */
export function decodeRecord(line: Buffer): TraceEvent | undefined {
  if (line[0] === 0x7b /* "{" */) return parseEvent(line.toString("utf8"));
  const head = HEADER.exec(line.subarray(0, 24).toString("latin1"));
  if (!head) return undefined;
  const payload = line.subarray((head[0] as string).length);
  if (payload.length !== Number(head[1])) return undefined;
  if (crc32(payload) !== Number.parseInt(head[2] as string, 16)) return undefined;
  return parseEvent(payload.toString("utf8"));
}

function parseEvent(text: string): TraceEvent | undefined {
  try {
    const e = JSON.parse(text) as TraceEvent;
    return e && typeof e === "object" && typeof e.id === "string" && typeof e.at === "number" ? e : undefined;
  } catch {
    return undefined;
  }
}

/** A record read back, or the byte offset of a line that could not be. */
export type SpoolItem = { event: TraceEvent } | { corruptAt: number };

/**
 * Reads the spool in chunks (memory bounded by the chunk, not the file) and yields its records in
 * order; a last line without its newline is a record torn by a crash, reported as corrupt.
 */
export function* readSpool(file: string, chunkBytes = 4 * 1024 * 1024): Generator<SpoolItem> {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  try {
    const chunk = Buffer.allocUnsafe(chunkBytes);
    let carry: Buffer = Buffer.alloc(0);
    let carryAt = 0;
    let position = 0;
    for (;;) {
      const n = readSync(fd, chunk, 0, chunkBytes, position);
      if (n === 0) break;
      const data = carry.length ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      const base = carry.length ? carryAt : position;
      position += n;
      let start = 0;
      for (let nl = data.indexOf(NL, start); nl !== -1; nl = data.indexOf(NL, start)) {
        if (nl > start) {
          const event = decodeRecord(data.subarray(start, nl));
          yield event ? { event } : { corruptAt: base + start };
        }
        start = nl + 1;
      }
      // The rest of a line continues in the next chunk: keep a copy (the chunk buffer is reused).
      carry = Buffer.from(data.subarray(start));
      carryAt = base + start;
    }
    if (carry.length) yield { corruptAt: carryAt };
  } finally {
    closeSync(fd);
  }
}

/**
 * Appends framed records (`frameRecord`) and fsyncs them. On a failed write (disk full, read-only volume) the file
 * is cut back to its previous length, so that no torn record is left before the next append; the
 * error is thrown for the caller to keep the records elsewhere.
 */
export function appendRecords(file: string, text: Buffer): void {
  const fd = openSync(file, "a+", 0o600);
  let before = 0;
  try {
    before = fstatSync(fd).size;
    // A crash mid-append leaves a line without its end: start on a new line, the torn one is skipped.
    if (before > 0 && lastByte(fd, before) !== NL) {
      writeSync(fd, "\n");
      before++;
    }
    for (let done = 0; done < text.length; ) done += writeSync(fd, text, done);
    // The spool is the durability guarantee while the trace store is down.
    fsyncSync(fd);
  } catch (err) {
    try {
      ftruncateSync(fd, before);
    } catch {
      // A volume that refuses this too: the reader skips the torn tail anyway.
    }
    throw err;
  } finally {
    closeSync(fd);
  }
}

function lastByte(fd: number, size: number): number {
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, size - 1);
  return b[0] as number;
}
