// The parser's per-CPU counters (dnsp_counters): summed over CPUs, by name.
import type { BpfMap } from './libbpf.js';
import { COUNTER_NAMES, arrayIndex, type CounterName } from './maps.js';

export type ParserCounterValues = Record<CounterName, number>;

/** Reads every counter, summed over all CPUs. */
export function readCounters(map: BpfMap): ParserCounterValues {
  const out = Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0])) as ParserCounterValues;
  COUNTER_NAMES.forEach((name, index) => {
    const slots = map.lookupPerCpu(arrayIndex(index)) ?? [];
    let sum = 0n;
    for (const slot of slots) sum += slot.readBigUInt64LE(0);
    out[name] = Number(sum);
  });
  return out;
}

/** Sets every counter on every CPU to zero. */
export function resetCounters(map: BpfMap, cpus: number): void {
  const zero = Buffer.alloc(8 * cpus);
  COUNTER_NAMES.forEach((_, index) => map.update(arrayIndex(index), zero));
}

/** The difference of two readings (after - before), by name. */
export function counterDelta(before: ParserCounterValues, after: ParserCounterValues): ParserCounterValues {
  const out = { ...after };
  for (const name of COUNTER_NAMES) out[name] = after[name] - before[name];
  return out;
}
