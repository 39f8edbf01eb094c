// The node namespace's network interfaces, and a watcher that says when they change.
//
// The dataplanes attach their tc programs (the parser, the membership marker, the ebpf policy
// programs) to the interfaces present at install, by ifindex. A workload started after the
// install, or a workload's veth deleted and created again under the same name (a pod restart),
// would otherwise go without them until the next policy change: the daemon re-installs when the
// set of (name, ifindex) differs from the one its last install saw.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorLines } from './line-monitor.js';

/** Interface name → ifindex. */
export type LinkSnapshot = ReadonlyMap<string, number>;

/** Reads /sys/class/net (the agent's own sysfs mount: the namespace's interfaces). */
export function readSysfsLinks(root = '/sys/class/net'): LinkSnapshot {
  const links = new Map<string, number>();
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return links;
  }
  for (const name of names) {
    try {
      const ifindex = Number.parseInt(readFileSync(join(root, name, 'ifindex'), 'utf8'), 10);
      if (Number.isInteger(ifindex)) links.set(name, ifindex);
    } catch {
      // gone between the listing and the read: not there
    }
  }
  return links;
}

export function sameLinks(a: LinkSnapshot, b: LinkSnapshot): boolean {
  if (a.size !== b.size) return false;
  for (const [name, ifindex] of a) if (b.get(name) !== ifindex) return false;
  return true;
}

/** What changed from `before` to `after`: names added (or re-created with another index) and removed. */
export function linkChanges(before: LinkSnapshot, after: LinkSnapshot): { added: string[]; removed: string[] } {
  const added = [...after].filter(([name, ifindex]) => before.get(name) !== ifindex).map(([name]) => name);
  const removed = [...before].filter(([name, ifindex]) => after.get(name) !== ifindex).map(([name]) => name);
  return { added: added.sort(), removed: removed.sort() };
}

/**
 * Calls `onEvent` whenever the kernel reports a link event (added, removed, changed); the
 * caller compares snapshots to decide whether anything it cares about changed. `onError` is
 * called once if the watch cannot run or ends by itself.
 */
export type LinkWatchFactory = (onEvent: () => void, onError: (error: Error) => void) => { close(): void };

/**
 * `ip -o monitor link address` (line-monitor.ts): rtnetlink's link and address groups, one line
 * per event (addresses: a trusted server's address coming up on the node moves the parser).
 */
export const ipMonitorLinkWatch: LinkWatchFactory = (onEvent, onError) => monitorLines(['ip', '-o', 'monitor', 'link', 'address'], () => onEvent(), onError);
