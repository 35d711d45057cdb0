/**
 * The request body's abort stage keeps no chunk it has passed on: a long upload must not hold
 * what it already relayed (the `Promise.race` with one long-lived abort promise did: every chunk
 * stayed reachable from that promise's reactions until the body ended). Real V8 collections
 * (`gc` enabled at run time), WeakRefs on the chunks.
 */

import { PassThrough } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { untilAborted } from "../../src/relay/relay.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function source(n: number, refs: WeakRef<Buffer>[]): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        async next() {
          if (i++ >= n) return { done: true, value: undefined };
          const chunk = Buffer.alloc(64 * 1024, i);
          refs.push(new WeakRef(chunk));
          return { done: false, value: chunk };
        },
      };
    },
  };
}

describe("untilAborted", () => {
  it("does not keep the chunks it passed on", async () => {
    const refs: WeakRef<Buffer>[] = [];
    const it = untilAborted(source(400, refs), new AbortController().signal)[Symbol.asyncIterator]();
    for (let i = 0; i < 300; i++) await it.next();
    // Mid-stream: the body is not finished, the first 300 chunks were passed on.
    await new Promise((r) => setImmediate(r));
    gc();
    const alive = refs.slice(0, 299).filter((r) => r.deref() !== undefined).length;
    expect(alive).toBeLessThan(10);
    await it.return?.();
  });

  it("fails the read in progress when the caller hangs up", async () => {
    const abort = new AbortController();
    const never: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<Uint8Array>>(() => {}) }),
    };
    const it = untilAborted(never, abort.signal)[Symbol.asyncIterator]();
    const read = it.next();
    abort.abort();
    await expect(read).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(it.next()).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });

  it("passes a Node stream's chunks on as received, not joined, with backpressure", async () => {
    const body = new PassThrough();
    // Ten chunks wait before the first read (the relay was busy upstream): the stream's own async
    // iterator would hand them over joined into one new buffer (a copy of the upload).
    for (let i = 0; i < 10; i++) body.write(Buffer.alloc(1024, i));
    body.end();
    const sizes: number[] = [];
    const it = untilAborted(body, new AbortController().signal)[Symbol.asyncIterator]();
    await new Promise((r) => setImmediate(r));
    // Paused after a few chunks: the rest waits in the stream (which stops its source).
    expect(body.isPaused()).toBe(true);
    for (let r = await it.next(); !r.done; r = await it.next()) sizes.push(r.value.length);
    expect(sizes).toEqual(Array(10).fill(1024));
  });

  it("fails with the stream's error, and leaving early destroys the stream", async () => {
    const failing = new PassThrough();
    const it = untilAborted(failing, new AbortController().signal)[Symbol.asyncIterator]();
    const read = it.next();
    failing.destroy(new Error("boom"));
    await expect(read).rejects.toThrow("boom");
    const left = new PassThrough();
    left.write(Buffer.from("x"));
    const it2 = untilAborted(left, new AbortController().signal)[Symbol.asyncIterator]();
    expect((await it2.next()).value).toEqual(Buffer.from("x"));
    await it2.return?.();
    expect(left.destroyed).toBe(true);
  });

  it("fails a Node stream's read in progress when the caller hangs up", async () => {
    const abort = new AbortController();
    const it = untilAborted(new PassThrough(), abort.signal)[Symbol.asyncIterator]();
    const read = it.next();
    abort.abort();
    await expect(read).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(it.next()).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });
});
