// Waiting on conditions with deadlines: the lab never sleeps a fixed time to synchronise.
import { setTimeout as delay } from 'node:timers/promises';

export class LabTimeoutError extends Error {
  override readonly name = 'LabTimeoutError';
  constructor(
    readonly condition: string,
    readonly timeoutMs: number,
    readonly lastProblem: string | undefined,
  ) {
    super(`timed out after ${timeoutMs} ms waiting for ${condition}${lastProblem ? ` (last: ${lastProblem})` : ''}`);
  }
}

export function isLabTimeoutError(error: unknown): error is LabTimeoutError {
  return error instanceof LabTimeoutError;
}

/**
 * Re-checks `probe` until it returns a value other than undefined, or the deadline passes.
 * Probes are spaced by a short, growing pause (5 ms up to 100 ms) so a slow condition does not
 * spin; a probe that throws counts as "not yet" and its message is reported on timeout.
 */
export async function waitFor<T>(
  condition: string,
  probe: () => Promise<T | undefined> | T | undefined,
  options: { readonly timeoutMs: number; readonly stopOn?: (error: unknown) => boolean },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let pause = 5;
  let lastProblem: string | undefined;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
      lastProblem = undefined;
    } catch (error) {
      if (options.stopOn?.(error)) throw error;
      lastProblem = error instanceof Error ? error.message : String(error);
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new LabTimeoutError(condition, options.timeoutMs, lastProblem);
    await delay(Math.min(pause, left));
    pause = Math.min(pause * 2, 100);
  }
}
