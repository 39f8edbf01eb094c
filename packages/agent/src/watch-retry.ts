// Starting a failed watch again (the interface watch, the removal watch: child processes that
// can end — killed, out of memory, a tool missing): after 5 s, doubling to at most 5 min while
// it keeps failing; a watch that ran a minute before failing starts over at 5 s.
import type { Clock } from '@dnsplane/core';

/** The first delay (AgentEnvironment.watchRetryMs overrides it: tests). */
export const DEFAULT_WATCH_RETRY_MS = 5_000;
export const WATCH_RETRY_MAX_MS = 300_000;
/** A watch that ran this long before failing counts as having worked: the delay starts over. */
export const WATCH_HEALTHY_MS = 60_000;

export class WatchRetry {
  readonly #baseMs: number;
  readonly #clock: Clock;
  #failures = 0;
  #startedAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(baseMs: number, clock: Clock) {
    this.#baseMs = baseMs;
    this.#clock = clock;
  }

  /** The watch is running (from now on). */
  started(): void {
    this.#startedAt = this.#clock.now();
  }

  /** The watch failed: `restart` runs after the returned delay (ms). */
  failed(restart: () => void): number {
    const ranMs = this.#startedAt === undefined ? 0 : this.#clock.now() - this.#startedAt;
    this.#startedAt = undefined;
    if (ranMs >= WATCH_HEALTHY_MS) this.#failures = 0;
    this.#failures += 1;
    const delay = Math.min(this.#baseMs * 2 ** Math.min(this.#failures - 1, 30), WATCH_RETRY_MAX_MS);
    this.cancel();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      restart();
    }, delay);
    this.#timer.unref();
    return delay;
  }

  /** No restart pending (stop). */
  cancel(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
