/**
 * A Node stream's chunks, read through its `data` events rather than its async iterator: that
 * iterator's `read()` joins the chunks buffered while the reader waits (on the teleservice, on the
 * caller) into one new buffer, which copied most of a large body a second time (a 100 MiB MTOM
 * upload over HTTP/1.1: 1,393 reads of ~75 KiB, 1,282 of them copies of 16 KiB chunks) and doubled
 * the garbage that only full collections free (bench/reports/2026-12-04-issue-25-session-10-mtom.md).
 */
import { IncomingMessage } from "node:http";

/** A Node stream body (an HTTP request, an upstream answer). */
export type NodeReadable = AsyncIterable<Uint8Array> & {
  on(event: string, listener: (...args: never[]) => void): unknown;
  off(event: string, listener: (...args: never[]) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  destroy(err?: Error): unknown;
  readableEnded?: boolean;
};

/** Whether a body is a Node stream (rather than any async iterable). */
export function isNodeReadable(body: AsyncIterable<Uint8Array>): body is NodeReadable {
  const b = body as Partial<NodeReadable>;
  return (
    typeof b.on === "function" &&
    typeof b.pause === "function" &&
    typeof b.resume === "function" &&
    typeof b.destroy === "function" &&
    "readableFlowing" in body
  );
}

/** Chunks a paused Node stream body may hold before it is read on (then it stops its source). */
const READ_AHEAD_CHUNKS = 4;

function prematureClose(): Error {
  return Object.assign(new Error("the stream closed before its body was complete"), {
    code: "ERR_STREAM_PREMATURE_CLOSE",
  });
}

/**
 * A Node stream's chunks as an iterator, through `data` events: as its async iterator would, it
 * fails with the stream's error (or a premature close), and `return()` destroys the stream.
 */
export function streamChunks(
  stream: NodeReadable,
  signal?: AbortSignal,
  cancelled: () => Error = () => new Error("cancelled"),
): AsyncIterator<Uint8Array> {
  const queue: Uint8Array[] = [];
  let paused = false;
  let ended = stream.readableEnded === true;
  let failure: unknown;
  let pending:
    | { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (err: unknown) => void }
    | undefined;
  const settle = (): void => {
    const p = pending;
    if (!p) return;
    if (queue.length > 0) {
      pending = undefined;
      p.resolve({ done: false, value: queue.shift() as Uint8Array });
    } else if (failure !== undefined) {
      pending = undefined;
      p.reject(failure);
    } else if (ended) {
      pending = undefined;
      p.resolve({ done: true, value: undefined });
    }
  };
  const onData = (chunk: Uint8Array): void => {
    const p = pending;
    if (p && queue.length === 0) {
      pending = undefined;
      p.resolve({ done: false, value: chunk });
      return;
    }
    queue.push(chunk);
    if (queue.length >= READ_AHEAD_CHUNKS && !paused) {
      paused = true;
      stream.pause();
    }
  };
  const onEnd = (): void => {
    ended = true;
    detach();
    settle();
  };
  const fail = (err: unknown): void => {
    if (ended || failure !== undefined) return;
    failure = err;
    detach();
    settle();
  };
  const onError = (err: Error): void => fail(err);
  const onClose = (): void => fail(prematureClose());
  const onAbort = (): void => fail(cancelled());
  const detach = (): void => {
    stream.off("data", onData);
    stream.off("end", onEnd);
    // The "error" listener stays: a late error must not become an uncaught exception.
    stream.off("close", onClose);
    signal?.removeEventListener("abort", onAbort);
  };
  if (signal?.aborted) failure = cancelled();
  else if (!ended) {
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
  }
  return {
    next() {
      if (signal?.aborted && failure === undefined && !ended) fail(cancelled());
      if (queue.length > 0) {
        const value = queue.shift() as Uint8Array;
        if (paused && queue.length === 0) {
          paused = false;
          stream.resume();
        }
        return Promise.resolve({ done: false, value });
      }
      if (paused) {
        paused = false;
        stream.resume();
      }
      return new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
        pending = { resolve, reject };
        settle();
      });
    },
    async return() {
      const done = ended || failure !== undefined;
      queue.length = 0;
      if (!done) {
        failure = cancelled();
        detach();
        // As the stream's own async iterator does when left early (node:stream's `destroyer`): an
        // HTTP/1.1 request lets go of its socket first, so that the answer (a 413 fault) still goes.
        if (stream instanceof IncomingMessage) stream.socket = null as unknown as IncomingMessage["socket"];
        stream.destroy();
      }
      return { done: true as const, value: undefined };
    },
  };
}
