// What the parser left in its learned-events ring buffer under a pin root: for the dataplanes
// that read none (iptables, ebpf), whose tables tell the parser to write none.
import { join } from 'node:path';
import { BpfMap, LearnedEventConsumer, MAP_NAMES } from '@dnsplane/bpf-parser';

/** Records waiting in the ring buffer pinned under `pinRoot` (read, and so consumed, here). */
export function pendingLearnedEventRecords(pinRoot: string): number {
  const map = BpfMap.fromPinned(join(pinRoot, MAP_NAMES.events));
  const consumer = new LearnedEventConsumer(map, () => undefined, { drainIntervalMs: 3_600_000 });
  try {
    return consumer.drain();
  } finally {
    consumer.close();
    map.close();
  }
}
