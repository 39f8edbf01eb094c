// The cgroup v2 hierarchy's root, where a program attached by link sees every process of the
// machine (the connect marker then filters by network namespace). A system with cgroup v2
// mounted (e.g. /sys/fs/cgroup on a unified-hierarchy system) is used as it is; otherwise
// (cgroup v1 only, as on this project's CI machines) the hierarchy is mounted for the moment
// of the attach at a private temporary folder and unmounted again: the link holds the cgroup,
// not the mount, so nothing stays mounted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmdirSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelError } from '@dnsplane/core';

/** statfs f_type of a cgroup v2 filesystem (CGROUP2_SUPER_MAGIC). */
const CGROUP2_SUPER_MAGIC = 0x63677270;

/** Runs a command; throws when it fails. Injected by tests. */
export type RunCommand = (argv: readonly [string, ...string[]]) => void;

const runCommand: RunCommand = ([file, ...args]) => {
  execFileSync(file, args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

/** Mount points of cgroup v2 filesystems showing the hierarchy's root, from /proc/self/mountinfo text. */
export function cgroup2RootMounts(mountinfo: string): string[] {
  const mounts: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (before === undefined || after === undefined) continue;
    const fields = before.split(' ');
    const fstype = after.split(' ')[0];
    // fields: id, parent, major:minor, root, mount point, …; octal escapes (\040) in paths
    if (fstype === 'cgroup2' && fields[3] === '/' && fields[4] !== undefined) {
      mounts.push(fields[4].replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))));
    }
  }
  return mounts;
}

/**
 * Calls `use` with a directory that is the cgroup v2 root: an existing mount, or one made for
 * the call and removed after it (also when `use` throws). KernelError when neither works.
 */
export function withCgroup2Root<T>(
  use: (dir: string) => T,
  options: { readonly mountinfo?: string; readonly run?: RunCommand } = {},
): T {
  // A listed mount can be shadowed: a namespaced process that mounted a fresh sysfs over /sys
  // (as `ip netns exec` and the lab do) still lists /sys/fs/cgroup/unified, which now resolves
  // into the new sysfs. So a mount counts only where the path really is a cgroup v2 filesystem.
  const usable = cgroup2RootMounts(options.mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8')).find(isCgroup2);
  if (usable !== undefined) return use(usable);
  const run = options.run ?? runCommand;
  const dir = mkdtempSync(join(tmpdir(), 'dnsplane-cgroup2-'));
  try {
    try {
      run(['mount', '-t', 'cgroup2', 'cgroup2', dir]);
    } catch (error) {
      throw new KernelError(`mount cgroup2 at ${dir}`, error instanceof Error ? error.message : String(error));
    }
    try {
      return use(dir);
    } finally {
      run(['umount', dir]);
    }
  } finally {
    rmdirSync(dir);
  }
}

function isCgroup2(dir: string): boolean {
  try {
    return statfsSync(dir).type === CGROUP2_SUPER_MAGIC;
  } catch {
    return false;
  }
}
