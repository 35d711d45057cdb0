/**
 * Single flight across replicas: one holder of a store lease does the work (a PSC refresh, a token
 * exchange) while the others wait and re-read its result. The lease is renewed while the work runs,
 * so a slow PSC does not let a second replica start the same refresh.
 */
import { EproxyError } from "../errors.ts";
import type { AuthStore } from "./store.ts";

/** Runs `work` under the lease `name`, unless `done()` finds the result already there. */
export async function underLease<T>(
  store: AuthStore,
  name: string,
  opts: { ttlMs: number; waitMs: number },
  done: () => Promise<T | undefined>,
  work: () => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + opts.waitMs;
  for (;;) {
    const lease = await store.tryLease(name, opts.ttlMs);
    if (lease) {
      const renew = setInterval(
        () => {
          lease.renew().catch(() => {});
        },
        Math.max(50, Math.floor(opts.ttlMs / 3)),
      );
      renew.unref();
      try {
        // Re-read after acquiring: another holder may have finished just before.
        return (await done()) ?? (await work());
      } finally {
        clearInterval(renew);
        await lease.release().catch(() => {});
      }
    }
    await new Promise((r) => setTimeout(r, 50));
    const result = await done();
    if (result !== undefined) return result;
    if (Date.now() > deadline)
      throw new EproxyError("UNAVAILABLE", "another replica is still refreshing this session; retry");
  }
}

/**
 * Waits for an early renewal at most `waitMs`, then settles for `current` (still valid): also when
 * the renewal fails with an error `keepCurrent` accepts (an outage); other errors propagate. The
 * renewal itself goes on in the background.
 */
export async function preferRenewed<T>(
  renewal: Promise<T>,
  current: T,
  waitMs: number,
  keepCurrent: (err: unknown) => boolean,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const got = await Promise.race([
      renewal,
      new Promise<undefined>((r) => {
        timer = setTimeout(() => r(undefined), waitMs);
      }),
    ]);
    return got ?? current;
  } catch (err) {
    if (keepCurrent(err)) return current;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
