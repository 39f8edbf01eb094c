// The parser's learned events under a pin root, as the labs check them: what it left in the
// ring buffer (for the dataplanes that read none, iptables and ebpf, whose tables tell the
// parser to write none), and whether the table in force tells it to write any.
import { join } from 'node:path';
import { arrayIndex, BpfMap, decodeTableInfo, LearnedEventConsumer, MAP_NAMES } from '@dnsplane/bpf-parser';

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

/** Whether the parser's table in force under `pinRoot` writes learned events (only the nftables mirror reads them). */
export function learnedEventsInForce(pinRoot: string): boolean {
  const table = BpfMap.fromPinned(join(pinRoot, MAP_NAMES.table));
  try {
    const value = table.lookup(arrayIndex(0));
    return value === undefined || decodeTableInfo(value).events !== false;
  } finally {
    table.close();
  }
}
