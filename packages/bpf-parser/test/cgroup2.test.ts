// Finding the cgroup v2 root in /proc/self/mountinfo text, and the mount fallback's steps (injected).
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cgroup2RootMounts, withCgroup2Root } from '../src/cgroup2.js';

const MOUNTINFO = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  '90 41 0:38 /system.slice /mnt/sub rw,relatime - cgroup2 cgroup2 rw',
  '91 23 0:38 / /mnt/with\\040space rw shared:5 - cgroup2 cgroup2 rw',
].join('\n');

describe('cgroup v2 root', () => {
  it('lists the cgroup2 mounts of the root (not sub-cgroup bind mounts, not v1), with escapes decoded', () => {
    expect(cgroup2RootMounts(MOUNTINFO)).toEqual(['/sys/fs/cgroup/unified', '/mnt/with space']);
    expect(cgroup2RootMounts('')).toEqual([]);
  });

  it('a listed mount that is not a cgroup2 filesystem at its path (shadowed) is skipped: mounts its own, unmounts after, also on error', () => {
    const listed = mkdtempSync(join(tmpdir(), 'dnsplane-listed-'));
    try {
      const commands: string[][] = [];
      const run = (argv: readonly string[]): void => void commands.push([...argv]);
      const info = `41 31 0:38 / ${listed} rw,relatime - cgroup2 cgroup2 rw`;
      let used = '';
      expect(() =>
        withCgroup2Root(
          (dir) => {
            used = dir;
            throw new Error('attach failed');
          },
          { mountinfo: info, run },
        ),
      ).toThrow('attach failed');
      expect(used).not.toBe(listed);
      expect(commands).toEqual([
        ['mount', '-t', 'cgroup2', 'cgroup2', used],
        ['umount', used],
      ]);
    } finally {
      rmdirSync(listed);
    }
  });

  it('a mount that fails is a KernelError naming the folder', () => {
    const run = (argv: readonly string[]): void => {
      if (argv[0] === 'mount') throw new Error('permission denied');
    };
    expect(() => withCgroup2Root(() => 1, { mountinfo: '', run })).toThrow(/mount cgroup2 at .*dnsplane-cgroup2-.*permission denied/);
  });
});
