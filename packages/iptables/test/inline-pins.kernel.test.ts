// The inline wiring's pins and learned state, in a fresh namespace for both backends: the
// parser and one xt_member program per used domain set are pinned before the rules that name
// them; a set no rule uses any more is unpinned after the apply; learned entries go in and
// out through the membership maps; close() leaves everything, remove() takes rules then pins.
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { DesiredState, LearnedEntry } from '@dnsplane/core';
import { DnsParserProgram, MAP_NAMES } from '@dnsplane/bpf-parser';
import { join } from 'node:path';
import { waitFor } from '../../../test/lab/wait.js';
import { createIptablesDataplane, domainMatchPinPath, inlineParsing, iptablesProcessRunner, parserProgramPinPath } from '../src/index.js';
import type { ResolvedBackend } from '../src/index.js';
import { dns, peer, port, rule } from './fixtures.js';
import { createNetns, deleteNetns, inNetns, netnsRunner } from './netns.js';

const SET_A = 0x0a0a0a0a;
const SET_B = 0x0b0b0b0b;

function stateUsing(ids: readonly number[]): DesiredState {
  return {
    domainSets: [SET_A, SET_B].map((id) => ({ id, name: `ds_${id.toString(16)}`, patterns: [] })),
    policies: [
      {
        name: 'egress',
        order: 1,
        egress: ids.map((id, index) => rule(index, 'allow', { protocol: 6, destination: peer({ domainSetId: id, ports: [port(443)] }) })),
      },
    ],
    endpoints: [
      { name: 'web', labels: {}, interface: 'veth-web', host: false, addresses: [], ingressPolicies: [], egressPolicies: ['egress'] },
    ],
    dns: { ...dns, trustedServers: [{ family: 4, address: '198.18.53.2', port: 53 }] },
  };
}

describe.each(['legacy', 'nft'] as const)('inline pins and learned state on the %s backend', (backend: ResolvedBackend) => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('pins before applying, prunes after, keeps all on close, removes rules then pins', async () => {
    const netns = await createNetns();
    const pinRoot = `/sys/fs/bpf/dnsplane-t${randomBytes(4).toString('hex')}`;
    cleanups.push(async () => {
      await deleteNetns(netns);
      rmSync(pinRoot, { recursive: true, force: true });
    });
    const make = () => createIptablesDataplane({ backend, runner: netnsRunner(netns), ...inlineParsing({ pinRoot }) });
    const dataplane = make();
    await dataplane.install(stateUsing([SET_A, SET_B]));
    const saved = await inNetns(netns, `iptables-${backend}-save`, ['-t', 'filter']);
    for (const id of [SET_A, SET_B]) {
      expect(existsSync(domainMatchPinPath(pinRoot, id))).toBe(true);
      expect(saved).toContain(`-m bpf --object-pinned ${domainMatchPinPath(pinRoot, id)}`);
    }
    expect(saved).toContain(`-m bpf --object-pinned ${parserProgramPinPath(pinRoot)}`);

    // Learned entries in and out through the kernel maps; the later expiry wins.
    const now = Date.now();
    const entries: LearnedEntry[] = [
      { setId: SET_A, family: 4, address: '198.19.7.1', expiresAt: now + 60_000 },
      { setId: SET_B, family: 6, address: 'fd00:19::7:1', expiresAt: now + 90_000 },
    ];
    await dataplane.importLearned([...entries, { setId: SET_A, family: 4, address: '198.19.7.2', expiresAt: now - 1000 }]);
    await dataplane.importLearned([{ ...entries[0]!, expiresAt: now + 10_000 }]);
    const exported = await dataplane.exportLearned();
    expect(exported.map((e) => [e.setId, e.address])).toEqual(entries.map((e) => [e.setId, e.address]));
    exported.forEach((e, i) => expect(Math.abs(e.expiresAt - entries[i]!.expiresAt)).toBeLessThan(50));
    const status = await dataplane.status();
    expect(status.learned).toBe(2);
    expect(Object.keys(status.counters)).toEqual(expect.arrayContaining(['parser.parsed', 'parser.learned', 'parser.untrusted']));

    // B is no longer used: unpinned once the rules naming it are gone.
    await dataplane.install(stateUsing([SET_A]));
    expect(existsSync(domainMatchPinPath(pinRoot, SET_A))).toBe(true);
    expect(existsSync(domainMatchPinPath(pinRoot, SET_B))).toBe(false);

    // close(): everything stays in force; a new driver (an agent restart) finds it all.
    await dataplane.close();
    expect(existsSync(parserProgramPinPath(pinRoot))).toBe(true);
    const restarted = make();
    expect((await restarted.exportLearned()).length).toBe(2);
    expect((await restarted.status()).learned).toBe(2); // counted from the pinned maps
    await restarted.install(stateUsing([SET_A]));
    await restarted.remove();
    await restarted.close();
    expect(existsSync(pinRoot)).toBe(false);
    expect(await inNetns(netns, `iptables-${backend}-save`, ['-t', 'filter'])).not.toContain('DNSPLANE');
  });
});

describe('remove() during a migration', () => {
  it('keeps the shared parser maps pinned while another dataplane\'s tc program uses them', async () => {
    const netns = await createNetns();
    const pinRoot = `/sys/fs/bpf/dnsplane-t${randomBytes(4).toString('hex')}`;
    let other: DnsParserProgram | undefined;
    try {
      const dataplane = createIptablesDataplane({ backend: 'legacy', runner: netnsRunner(netns), ...inlineParsing({ pinRoot }) });
      await dataplane.install(stateUsing([SET_A]));
      // What the nftables/ebpf dataplane leaves after its install: a tc program on the same maps.
      other = DnsParserProgram.load({ pinRoot });
      const otherPin = join(pinRoot, 'other_tc');
      other.tcClassifier.pin(otherPin);
      await dataplane.remove();
      await dataplane.close();
      expect(await inNetns(netns, 'iptables-legacy-save', ['-t', 'filter'])).not.toContain('DNSPLANE');
      expect(existsSync(parserProgramPinPath(pinRoot))).toBe(false);
      expect(existsSync(domainMatchPinPath(pinRoot, SET_A))).toBe(false);
      expect(existsSync(join(pinRoot, MAP_NAMES.members4))).toBe(true);

      // Once nothing else uses them, remove() takes the pin root too.
      rmSync(otherPin);
      other.close();
      other = undefined;
      const mapId = JSON.parse((await iptablesProcessRunner.run('bpftool', ['-j', 'map', 'show', 'pinned', join(pinRoot, MAP_NAMES.members4)])).stdout).id as number;
      // bpffs drops an unlinked pin's reference after an RCU grace period.
      await waitFor('the tc program to be freed', async () => {
        const progs = JSON.parse((await iptablesProcessRunner.run('bpftool', ['-j', 'prog', 'show'])).stdout) as Array<{ type: string; map_ids?: number[] }>;
        return progs.some((p) => p.type !== 'socket_filter' && (p.map_ids ?? []).includes(mapId)) ? undefined : true;
      }, { timeoutMs: 5000 });
      const again = createIptablesDataplane({ backend: 'legacy', runner: netnsRunner(netns), ...inlineParsing({ pinRoot }) });
      await again.remove();
      expect(existsSync(pinRoot)).toBe(false);
    } finally {
      other?.close();
      await deleteNetns(netns);
      rmSync(pinRoot, { recursive: true, force: true });
    }
  });
});
