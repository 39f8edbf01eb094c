// Keeping a watch running (the interface watch, the removal watch: child processes that can
// end — killed, out of memory, a tool missing): KeptWatch starts it again after it fails, at the
// delays WatchRetry hands out — 5 s, doubling to at most 5 min while it keeps failing; a watch
// that ran a minute before failing starts over at 5 s.
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

  /** A restart is scheduled. */
  get pending(): boolean {
    return this.#timer !== undefined;
  }

  /** No restart pending (stop). */
  cancel(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

export type WatchState = 'running' | 'retrying' | 'off';

/**
 * A watch kept running: `start` is called again after the watch fails (at WatchRetry's delays)
 * until close(). `start` returns undefined when there is nothing to watch; it may call its
 * `onError` at once (a tool missing) or later (the child ended). Only the handle in force
 * reports: a failure of one already closed is ignored.
 */
export class KeptWatch {
  readonly #start: (onError: (error: Error) => void) => { close(): void } | undefined;
  readonly #retry: WatchRetry;
  readonly #events: { failed(error: Error, retryInMs: number): void; restarted(): void };
  #handle: { close(): void } | undefined;
  #closed = false;

  constructor(
    start: (onError: (error: Error) => void) => { close(): void } | undefined,
    retry: WatchRetry,
    events: { failed(error: Error, retryInMs: number): void; restarted(): void },
  ) {
    this.#start = start;
    this.#retry = retry;
    this.#events = events;
  }

  /** running; retrying: failed, a restart is scheduled; off: nothing to watch, or closed. */
  get state(): WatchState {
    if (this.#handle !== undefined) return 'running';
    return this.#retry.pending ? 'retrying' : 'off';
  }

  /** Starts the watch unless it runs (or was closed). */
  open(): void {
    if (this.#closed || this.#handle !== undefined) return;
    let failedAtStart = false;
    let handle: { close(): void } | undefined;
    handle = this.#start((error) => {
      if (this.#closed || (handle !== undefined && this.#handle !== handle)) return;
      failedAtStart = handle === undefined;
      this.#handle = undefined;
      this.#events.failed(error, this.#retry.failed(() => this.#restart()));
    });
    if (handle === undefined) return;
    if (failedAtStart) {
      handle.close();
      return;
    }
    this.#handle = handle;
    this.#retry.started();
  }

  close(): void {
    this.#closed = true;
    this.#retry.cancel();
    this.#handle?.close();
    this.#handle = undefined;
  }

  #restart(): void {
    this.open();
    if (this.#handle !== undefined) this.#events.restarted();
  }
}
