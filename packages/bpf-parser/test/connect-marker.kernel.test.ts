// The connect marker's attachment on the real kernel: cgroup links on the cgroup v2 root,
// pinned under the pin root, switched in place by a later load, gone when unpinned; the
// hierarchy mounted for the moment of the attach when no usable mount is listed. What the
// marks do to the node's connects is tested in the lab (packages/nftables, inline.kernel.test.ts).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CGROUP_ATTACH_TYPES, DnsParserProgram, HOST_CONNECT_PROGRAMS, MembershipMarker, pinnedLinkInfo, withCgroup2Root } from '../src/index.js';
import { testPinRoot } from './kernel-harness.js';
import { undoAfterEach } from './undo-after-each.js';

const cleanup = undoAfterEach();

function load(pinRoot: string): MembershipMarker {
  const marker = MembershipMarker.load({ pinRoot });
  cleanup.push(() => marker.close());
  return marker;
}

const linkExists = (id: number): boolean => {
  try {
    execFileSync('bpftool', ['link', 'show', 'id', String(id)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

describe('the connect marker (cgroup/connect4, cgroup/connect6)', () => {
  it('attaches by pinned links, a later load switches the same links to its programs, detaching unpins them', () => {
    const pinRoot = testPinRoot();
    cleanup.push(() => DnsParserProgram.removePins(pinRoot));
    const first = load(pinRoot);
    expect(first.hostAttached()).toEqual({});
    first.attachHost();
    const links = HOST_CONNECT_PROGRAMS.map(({ pin }) => pinnedLinkInfo(join(pinRoot, pin)));
    expect(links.map((l) => l.attachType)).toEqual([CGROUP_ATTACH_TYPES.inet4Connect, CGROUP_ATTACH_TYPES.inet6Connect]);
    expect(first.hostAttached()).toEqual({ connect4: first.hostPrograms[0]!.id, connect6: first.hostPrograms[1]!.id });

    const second = load(pinRoot);
    second.attachHost();
    const switched = HOST_CONNECT_PROGRAMS.map(({ pin }) => pinnedLinkInfo(join(pinRoot, pin)));
    expect(switched.map((l) => l.id)).toEqual(links.map((l) => l.id)); // the same links, no gap
    expect(second.hostAttached()).toEqual({ connect4: second.hostPrograms[0]!.id, connect6: second.hostPrograms[1]!.id });
    expect(second.hostPrograms[0]!.id).not.toBe(first.hostPrograms[0]!.id);

    expect(second.detachHost()).toBe(true);
    expect(second.detachHost()).toBe(false);
    expect(second.hostAttached()).toEqual({});
    for (const { pin } of HOST_CONNECT_PROGRAMS) expect(existsSync(join(pinRoot, pin))).toBe(false);
    for (const { id } of links) expect(linkExists(id)).toBe(false);
  });

  it('connectMarker: false loads the tc marker alone; attaching the connect marker is then refused', () => {
    const pinRoot = testPinRoot();
    cleanup.push(() => DnsParserProgram.removePins(pinRoot));
    const marker = MembershipMarker.load({ pinRoot, connectMarker: false });
    cleanup.push(() => marker.close());
    expect(marker.hasConnectMarker).toBe(false);
    expect(marker.program.id).toBeGreaterThan(0);
    expect(() => marker.attachHost()).toThrow(/without the connect marker/);
    expect(marker.hostAttached()).toEqual({});
  });

  it('removing the pin root detaches it too (uninstall)', () => {
    const pinRoot = testPinRoot();
    cleanup.push(() => DnsParserProgram.removePins(pinRoot));
    const marker = load(pinRoot);
    marker.attachHost();
    const ids = HOST_CONNECT_PROGRAMS.map(({ pin }) => pinnedLinkInfo(join(pinRoot, pin)).id);
    marker.close();
    DnsParserProgram.removePins(pinRoot);
    for (const id of ids) expect(linkExists(id)).toBe(false);
  });

  it('with no usable cgroup v2 mount listed, mounts one for the call and unmounts it after', () => {
    let seen = '';
    const inside = withCgroup2Root(
      (dir) => {
        seen = dir;
        return readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${dir} `);
      },
      { mountinfo: '' },
    );
    expect(inside).toBe(true);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(` ${seen} `);
    expect(existsSync(seen)).toBe(false);
  });
});
