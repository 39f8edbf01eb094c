import { afterEach, describe, expect, it } from 'vitest';
import { KeptWatch, WATCH_HEALTHY_MS, WATCH_RETRY_MAX_MS, WatchRetry } from '../src/watch-retry.js';
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

describe('a kept watch', () => {
  /** A watch whose starts are recorded; each start's onError and closed flag are kept. */
  function recorded(failAtStart: (start: number) => boolean) {
    const starts: Array<{ onError: (error: Error) => void; closed: boolean }> = [];
    const events: string[] = [];
    const retry = new WatchRetry(5, manualClock());
    retries.push(retry);
    const watch = new KeptWatch(
      (onError) => {
        const start = { onError, closed: false };
        starts.push(start);
        if (failAtStart(starts.length)) onError(new Error(`start ${starts.length} failed`));
        return { close: () => void (start.closed = true) };
      },
      retry,
      { failed: (error, retryInMs) => events.push(`failed ${error.message} ${retryInMs}`), restarted: () => events.push('restarted') },
    );
    return { watch, starts, events };
  }

  it('starts again after a failure at start and after a later one, and reports each', async () => {
    const { watch, starts, events } = recorded((n) => n === 1);
    watch.open();
    expect(watch.state).toBe('retrying');
    expect(starts[0]?.closed).toBe(true); // the handle of a failed start is closed
    await waitFor(() => watch.state === 'running', 'the restart');
    expect(events).toEqual(['failed start 1 failed 5', 'restarted']);
    starts[1]!.onError(new Error('ended'));
    expect(watch.state).toBe('retrying');
    await waitFor(() => starts.length === 3 && watch.state === 'running', 'the second restart');
    expect(events).toEqual(['failed start 1 failed 5', 'restarted', 'failed ended 10', 'restarted']);
    watch.close();
    expect(starts[2]?.closed).toBe(true);
    expect(watch.state).toBe('off');
  });

  it('ignores a failure of a handle it no longer holds, and starts nothing once closed', () => {
    const { watch, starts, events } = recorded(() => false);
    watch.open();
    watch.open(); // running: no second start
    expect(starts).toHaveLength(1);
    watch.close();
    starts[0]!.onError(new Error('late'));
    expect(events).toEqual([]);
    expect(watch.state).toBe('off');
    watch.open();
    expect(starts).toHaveLength(1);
  });

  it('is off when there is nothing to watch', () => {
    const retry = new WatchRetry(5, manualClock());
    const watch = new KeptWatch(() => undefined, retry, { failed: () => undefined, restarted: () => undefined });
    watch.open();
    expect(watch.state).toBe('off');
  });
});
