/**
 * `server.maxSemiSpaceMiB`: the size of V8's young generation, set before eProxy serves.
 *
 * V8 sizes the young generation from the machine's memory: on a 24 GB host Node 24 lets each
 * semi-space grow to 64 MiB. A scavenge copies what is alive in it, and when many callers connect at
 * once (a load balancer's pool, a load generator's ramp: hundreds of TLS sockets and their buffers
 * alive together) that is a lot to copy in one pause: 14-20 ms pauses at the fixed-rate benchmark
 * (`npm run bench:compare`), 1 of 37 over 10 ms per run. At 16 MiB, scavenges are four times as
 * frequent and each short: 0 over 10 ms, max 4.3-7.4 ms in three alternating runs, whole-run p99
 * lower (30-60 ms against 52-106), CPU per call within the runs' noise.
 *
 * The size is a V8 flag, read once when the heap is set up: `eproxy serve` replaces itself
 * (`process.execve`: same process id, same arguments and environment) with the flag added, unless
 * the flag is already given on node's command line or in `NODE_OPTIONS` (an operator's choice wins)
 * or the setting is 0 (V8's own sizing). Done before anything is opened: the new image starts clean.
 */

/** The V8 flag. */
export const SEMI_SPACE_FLAG = "--max-semi-space-size";

/** Set in the replaced process: never replace it twice. */
const REPLACED = "EPROXY_SEMI_SPACE_APPLIED";

/** Whether the flag is already given to this process (command line or NODE_OPTIONS). */
export function semiSpaceFlagGiven(
  execArgv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  const given = (s: string) => s === SEMI_SPACE_FLAG || s.startsWith(`${SEMI_SPACE_FLAG}=`);
  return execArgv.some(given) || (env.NODE_OPTIONS ?? "").split(/\s+/).some(given);
}

/**
 * What to do: `"replace"` with the arguments of the new image, or `"keep"` with the reason.
 */
export function youngGenerationPlan(
  mib: number,
  proc: {
    execPath: string;
    execArgv: readonly string[];
    argv: readonly string[];
    env: Readonly<Record<string, string | undefined>>;
    canReplace: boolean;
  },
): { action: "replace"; args: string[] } | { action: "keep"; why: string } {
  if (mib === 0) return { action: "keep", why: "server.maxSemiSpaceMiB is 0 (V8's own sizing)" };
  if (semiSpaceFlagGiven(proc.execArgv, proc.env)) return { action: "keep", why: `${SEMI_SPACE_FLAG} given` };
  if (proc.env[REPLACED]) return { action: "keep", why: "already replaced" };
  if (!proc.canReplace) return { action: "keep", why: "process.execve is not available here" };
  return {
    action: "replace",
    args: [proc.execPath, `${SEMI_SPACE_FLAG}=${mib}`, ...proc.execArgv, ...proc.argv.slice(1)],
  };
}

/**
 * Replaces this process with one whose young generation is at most `mib` MiB per semi-space
 * (returns only when it keeps this process; says why on stderr when it cannot apply the setting).
 */
export function applyYoungGeneration(mib: number): void {
  const plan = youngGenerationPlan(mib, {
    execPath: process.execPath,
    execArgv: process.execArgv,
    argv: process.argv,
    env: process.env,
    canReplace: typeof process.execve === "function",
  });
  if (plan.action === "keep") {
    if (plan.why.startsWith("process.execve")) {
      process.stderr.write(
        `server.maxSemiSpaceMiB not applied (${plan.why}): start node with ${SEMI_SPACE_FLAG}=${mib}\n`,
      );
    }
    return;
  }
  process.execve?.(plan.args[0] as string, plan.args, { ...process.env, [REPLACED]: "1" });
}
