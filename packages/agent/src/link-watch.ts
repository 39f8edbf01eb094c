// The node namespace's network interfaces, and a watcher that says when they change.
//
// The dataplanes attach their tc programs (the parser, the membership marker, the ebpf policy
// programs) to the interfaces present at install, by ifindex. A workload started after the
// install, or a workload's veth deleted and created again under the same name (a pod restart),
// would otherwise go without them until the next policy change: the daemon re-installs when the
// set of (name, ifindex) differs from the one its last install saw.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

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
 * `ip -o monitor link` as a child process: rtnetlink's link group, one line per event, and no
 * wakeup while nothing happens (no polling). The child is ours: close() ends it by its handle,
 * and util-linux's setpriv asks the kernel to send it SIGTERM when the agent dies without
 * closing it (SIGKILL, a crash), so no monitor outlives the agent.
 */
export const ipMonitorLinkWatch: LinkWatchFactory = (onEvent, onError) => {
  let closed = false;
  const child = spawn('setpriv', ['--pdeathsig', 'TERM', '--', 'ip', '-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-2000);
  });
  createInterface({ input: child.stdout }).on('line', () => {
    if (!closed) onEvent();
  });
  child.on('error', (error) => {
    if (!closed) onError(error);
  });
  child.on('exit', (code, signal) => {
    if (!closed) onError(new Error(`ip monitor link ended (${signal ?? `code ${code}`})${stderr === '' ? '' : `: ${stderr.trim()}`}`));
  });
  // The watch alone does not keep the daemon alive (its persist timer does).
  child.unref();
  return {
    close: () => {
      if (closed) return;
      closed = true;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
};
