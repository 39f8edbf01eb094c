import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { linkChanges, readSysfsLinks, sameLinks } from '../src/link-watch.js';

let root: string | undefined;
afterEach(() => {
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
  root = undefined;
});

describe('interface snapshots', () => {
  it('reads name → ifindex from a sysfs-shaped folder, skipping entries without a readable index', () => {
    root = mkdtempSync(join(tmpdir(), 'dnsplane-links-'));
    for (const [name, index] of [['lo', '1\n'], ['web0', '7\n']] as const) {
      mkdirSync(join(root, name));
      writeFileSync(join(root, name, 'ifindex'), index);
    }
    mkdirSync(join(root, 'half-gone'));
    expect(readSysfsLinks(root)).toEqual(new Map([['lo', 1], ['web0', 7]]));
    expect(readSysfsLinks(join(root, 'missing'))).toEqual(new Map());
  });

  it('compares by name and index, and names what changed', () => {
    const before = new Map([['lo', 1], ['web0', 7], ['old0', 8]]);
    const after = new Map([['lo', 1], ['web0', 11], ['new0', 12]]);
    expect(sameLinks(before, new Map(before))).toBe(true);
    expect(sameLinks(before, after)).toBe(false);
    expect(sameLinks(new Map([['a', 1]]), new Map([['b', 1]]))).toBe(false);
    expect(linkChanges(before, after)).toEqual({ added: ['new0', 'web0'], removed: ['old0', 'web0'] });
  });
});
