// The check every dataplane's inline guarantee is held to: resolve-then-connect trials in
// which every connect succeeds and no first SYN is retransmitted.
import { expect } from 'vitest';
import type { ConnectBatchResult, ConnectOptions, ConnectTrial } from './connect.js';
import type { Lab, LabNamespace } from './lab.js';

/** Runs the trials as one batch, asserts every first SYN passed, and returns the batch. */
export async function expectEveryFirstSynPasses(
  lab: Lab,
  ns: LabNamespace,
  trials: readonly ConnectTrial[],
  options?: ConnectOptions,
): Promise<ConnectBatchResult> {
  const batch = await lab.connectAfterResolveBatch(ns, trials, options);
  const failed = batch.trials.filter((t) => !t.connected || t.synRetransmitted);
  expect(
    failed.slice(0, 5).map((t) => `${t.name} → ${t.address}: connected=${t.connected} ${t.connectMs} ms ${t.error ?? ''}`),
    'trials that failed or lost their first SYN',
  ).toEqual([]);
  expect(batch.cleanConnects).toBe(trials.length);
  expect(batch.counters.synRetransmits).toBe(0);
  return batch;
}
