import { afterEach, describe, expect, it } from 'vitest';
import { WATCH_HEALTHY_MS, WATCH_RETRY_MAX_MS, WatchRetry } from '../src/watch-retry.js';
import { manualClock, waitFor } from './helpers.js';

const retries: WatchRetry[] = [];
afterEach(() => retries.splice(0).forEach((r) => r.cancel()));

describe('restarting a failed watch', () => {
  it('doubles the delay while the watch keeps failing, up to five minutes', () => {
    const retry = new WatchRetry(5_000, manualClock());
    retries.push(retry);
    const delays = Array.from({ length: 9 }, () => {
      retry.started();
      return retry.failed(() => undefined);
    });
    expect(delays).toEqual([5_000, 10_000, 20_000, 40_000, 80_000, 160_000, WATCH_RETRY_MAX_MS, WATCH_RETRY_MAX_MS, WATCH_RETRY_MAX_MS]);
  });

  it('starts over at the first delay when the watch ran a minute before failing', () => {
    const clock = manualClock();
    const retry = new WatchRetry(5_000, clock);
    retries.push(retry);
    retry.failed(() => undefined);
    retry.started();
    clock.advance(WATCH_HEALTHY_MS - 1);
    expect(retry.failed(() => undefined)).toBe(10_000);
    retry.started();
    clock.advance(WATCH_HEALTHY_MS);
    expect(retry.failed(() => undefined)).toBe(5_000);
  });

  it('runs the restart after the delay, and not once cancelled', async () => {
    const retry = new WatchRetry(5, manualClock());
    retries.push(retry);
    let restarts = 0;
    retry.failed(() => (restarts += 1));
    await waitFor(() => restarts === 1, 'the restart');
    retry.failed(() => (restarts += 1));
    retry.cancel();
    // A second, later restart to wait on: the cancelled one must not have run before it.
    const later = new WatchRetry(50, manualClock());
    retries.push(later);
    let done = false;
    later.failed(() => (done = true));
    await waitFor(() => done, 'the later restart');
    expect(restarts).toBe(1);
  });
});
