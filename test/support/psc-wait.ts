/**
 * Waiting on the PSC simulator by its events, not by sleeping: the push of a CIBA request as soon as
 * the simulator has it, with a deadline generous enough for a busy 2-core machine.
 */
import type { PendingPush, PscSimulator } from "../../src/sandbox/psc-simulator.ts";

/**
 * The pending push matching `match` (a national id, or a predicate): the one already pending, else the
 * next one pushed. Rejects after `timeoutMs`, naming what it waited for.
 */
export function pushFor(
  psc: PscSimulator,
  match: string | ((p: PendingPush) => boolean),
  timeoutMs = 20_000,
): Promise<PendingPush> {
  const matches = typeof match === "string" ? (p: PendingPush) => p.nationalId === match : match;
  return new Promise((resolve, reject) => {
    const onPush = (p: PendingPush) => {
      if (!matches(p)) return;
      done();
      resolve(p);
    };
    const timer = setTimeout(() => {
      done();
      reject(
        new Error(
          `no CIBA push for ${typeof match === "string" ? match : "the predicate"} within ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      psc.events.off("push", onPush);
    };
    // Listen before looking, so that a push between the two cannot be missed.
    psc.events.on("push", onPush);
    const already = psc.pending().find(matches);
    if (already) onPush(already);
  });
}
