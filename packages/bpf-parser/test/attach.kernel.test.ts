// tc attachment of the parser and the membership mark on a veth in a fresh network
// namespace, with real TCP SYNs from a peer namespace counted by mark in an nft table of the
// first namespace, re-attach in place, the parser's pinned socket filter, and uninstall.
// The attaching code runs in a child process under `nsenter --net=/run/netns/<ns>`.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPinRoot } from './kernel-harness.js';

const fixtures = fileURLToPath(new URL('./bpf-fixtures/', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

const suffix = randomBytes(3).toString('hex');
const nsA = `dnsplane-at-a-${suffix}`;
const nsB = `dnsplane-at-b-${suffix}`;
const vethA = `dpaa${suffix}`;
const vethB = `dpab${suffix}`;
const pinRoot = testPinRoot();
const MEMBER = '198.18.0.1';
const OTHER = '198.18.0.5';
const PEER = '198.18.0.2';

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

describe('tc attachment in a network namespace (parser, membership mark, uninstall)', () => {
  let namespacesUp = false;

  beforeAll(() => {
    ip('netns', 'add', nsA);
    ip('netns', 'add', nsB);
    ip('link', 'add', vethA, 'netns', nsA, 'type', 'veth', 'peer', 'name', vethB, 'netns', nsB);
    ip('-n', nsA, 'addr', 'add', `${MEMBER}/29`, 'dev', vethA);
    ip('-n', nsA, 'addr', 'add', `${OTHER}/29`, 'dev', vethA);
    ip('-n', nsB, 'addr', 'add', `${PEER}/29`, 'dev', vethB);
    ip('-n', nsA, 'link', 'set', vethA, 'up');
    ip('-n', nsB, 'link', 'set', vethB, 'up');
    namespacesUp = true;
  });

  afterAll(() => {
    for (const ns of [nsA, nsB]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(pinRoot, { recursive: true, force: true });
  });

  it('marks real packets to members, re-attaches in place, uninstalls everything', () => {
    expect(namespacesUp).toBe(true);
    const args = {
      pinRoot,
      ifname: vethA,
      peerNamespace: nsB,
      member: MEMBER,
      other: OTHER,
      table: `dnsplane-t${suffix}`,
      setId: 0xabc123,
      bit: 0x00040000,
      mask: 0x00ff0000,
    };
    const child = spawnSync(
      'nsenter',
      [`--net=/run/netns/${nsA}`, process.execPath, '--import', 'tsx', join(fixtures, 'attach-child.ts'), JSON.stringify(args)],
      { cwd: repoRoot, encoding: 'utf8', timeout: 80_000 },
    );
    if (child.status !== 0) throw new Error(`attach child failed (${child.status}): ${child.stderr}`);
    const r = JSON.parse(child.stdout.trim()) as Record<string, any>;

    expect(r.ifindex).toBeGreaterThan(1);
    expect(r.parserIngress).toMatchObject({ ifname: vethA, direction: 'ingress', priority: 0xd1, handle: 0xd15 });
    expect(r.parserEgress).toMatchObject({ direction: 'egress', priority: 0xd1, handle: 0xd15 });
    expect(r.parserReattach.progId).toBe(r.parserIngress.progId);
    expect(r.markAttach).toMatchObject({ direction: 'ingress', priority: 0xd2, handle: 0xd15 });
    expect(r.filtersIngress).toMatch(/pref 209 .*handle 0xd15 dnsplane_parse_:/);
    expect(r.filtersIngress).toMatch(/pref 210 .*handle 0xd15 dnsplane_member:/);

    expect(r.connectMember).toEqual([7, 7]); // refused: the SYN got there
    expect(r.connectOther).toEqual([7, 7]);
    // two SYNs to the member carried the set's bit, the two to the other address did not
    expect(r.afterConnects).toEqual({ marked: 2, toMember: 2, toOther: 2 });

    expect(r.markReattach.progId).not.toBe(r.markAttach.progId);
    expect(r.markQuery).toBe(r.markReattach.progId);
    expect((r.filtersAfterReattach.match(/handle 0xd15 dnsplane_member:/g) ?? []).length).toBe(1);
    expect(r.afterReattach).toEqual({ marked: 4, toMember: 4 });
    expect(r.socketPin).toBe(`${pinRoot}/prog_parse_socket`);
    expect(r.socketPinAgain).toBe(r.socketPin);

    // real xt_bpf rules: the set's match saw the 2 SYNs to the member only; the parser's filter matches all 4
    expect(r.connectXt).toEqual([7, 7, 7, 7]);
    expect(r.xtCounts).toEqual({ member: 2, parse: 4 });

    expect(r.uninstall.detached).toEqual([
      { ifname: vethA, direction: 'ingress', priority: 0xd1, handle: 0xd15 },
      { ifname: vethA, direction: 'ingress', priority: 0xd2, handle: 0xd15 },
      { ifname: vethA, direction: 'egress', priority: 0xd1, handle: 0xd15 },
    ]);
    expect(r.uninstall.missingInterfaces).toEqual(['dpnone0']);
    expect(r.pinRootAfter).toBe(false);
    expect(r.queriesAfter).toEqual({ parserIngress: null, parserEgress: null, mark: null });
    expect(r.filtersAfterUninstall).not.toMatch(/dnsplane/);
    expect(r.connectAfterUninstall).toEqual([7, 7]);
    expect(r.afterUninstall).toEqual({ marked: 6, toMember: 8 });
    expect(r.detachAgain).toBe(false);
  });
});
