/**
 * A bounded memo of a pure function of a string: the hot path computes the same digests for the
 * same few values on every call (a session's trace hash). Undefined results are not kept. Never
 * keyed by a secret (a session token, an API key): the memo would keep secrets in the heap for
 * good. When full it starts over (no LRU bookkeeping on the hot path); the bound keeps memory flat
 * whatever values callers send.
 */
export function memoize<T>(fn: (key: string) => T, max = 10_000): (key: string) => T {
  let cache = new Map<string, T>();
  return (key) => {
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    const value = fn(key);
    if (value === undefined) return value;
    if (cache.size >= max) cache = new Map();
    cache.set(key, value);
    return value;
  };
}
