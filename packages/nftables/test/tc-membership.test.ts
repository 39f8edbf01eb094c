// TcMembership with an injected kernel: where the parser and the marker are attached, what
// the marker is programmed with, how learned events are batched, what remove/close touch.
// (The real kernel is in inline.kernel.test.ts.)
import { describe, expect, it } from 'vitest';
import { entryMark } from '@dnsplane/bpf-parser';
import { NotSupportedError, type DesiredState, type LearnedEntry } from '@dnsplane/core';
import { FakeNftHandle } from '../src/fake-handle.js';
import { sortedOperationLines } from '../src/render-json.js';
import type { MarkedSet } from '../src/mark-bits.js';
import { createNftablesDataplane } from '../src/nftables-dataplane.js';
import { NftTransaction } from '../src/transaction.js';
import type { TcMembershipKernel } from '../src/tc-membership.js';
import { ManualClock, anyPeer, baseState, githubSet, rule, s3Set } from './fixtures.js';

function fakeKernel(membership: LearnedEntry[] = []) {
  const log: string[] = [];
  const programmed = new Map<number, readonly MarkedSet[]>();
  const masks = new Map<number, number>();
  let hostAttach: 'never' | 'attached' | 'detached' | 'refused' = 'never';
  const interfaces = [
    { name: 'lo', ifindex: 1 },
    { name: 'eth0', ifindex: 2 },
    { name: 'veth-web', ifindex: 7 },
  ];
  const answerMarks = new Map<number, number>();
  /** The node's own addresses (a trusted server among them is a resolver on the node). */
  const nodeAddresses = new Set(['127.0.0.1', '198.18.0.2']);
  /** "parser ingress eth0", "marker ingress veth-web": what is on the hooks now. */
  const onHooks = new Set<string>();
  let emit: ((entry: LearnedEntry, expiryNs: bigint) => void) | undefined;
  const kernel: TcMembershipKernel = {
    loadParser: (pinRoot) => {
      log.push(`load parser ${pinRoot}`);
      return {
        configure: () => log.push('configure'),
        setDomainSets: (sets, wakeSets) => log.push(`domain sets ${sets.length}`, `wake sets ${wakeSets.join(',')}`),
        exportLearned: () => membership,
        importLearned: (entries) => (membership.push(...entries), entries.length),
        counters: () => ({ parsed: 3 }),
        attach: (ifname, direction) => (onHooks.add(`parser ${direction} ${ifname}`), log.push(`parser ${direction} ${ifname}`)),
        setAnswerMarks: (marks, { prune }) => {
          if (prune) answerMarks.clear();
          for (const [ifindex, bits] of marks) answerMarks.set(ifindex, bits);
          log.push(`answer marks ${[...marks].map(([i, b]) => `${i}=0x${b.toString(16)}`).join(',')}${prune ? ' (pruned)' : ''}`);
        },
        consume: (onLearned) => {
          emit = onLearned;
          return () => {
            emit = undefined;
            log.push('stop consuming');
          };
        },
        close: () => log.push('close parser'),
      };
    },
    loadMarker: (_pinRoot, { connectMarker }) => (log.push(`load marker${connectMarker ? ' with connect marker' : ''}`), {
      setEndpointSets: (ifindex, mask, entries) => {
        programmed.set(ifindex, entries);
        masks.set(ifindex, mask);
        log.push(`marker entries ${ifindex}: ${entries.map((e) => `${e.setId.toString(16)}=0x${entryMark(e).toString(16)}`).join(',')}`);
      },
      endpoints: () => new Map([...programmed].map(([ifindex, entries]) => [ifindex, { markMask: masks.get(ifindex) ?? 0, entries }])),
      removeEndpoint: (ifindex) => programmed.delete(ifindex),
      attach: (ifname) => (onHooks.add(`marker ingress ${ifname}`), log.push(`marker ingress ${ifname}`)),
      attachHost: () => {
        if (hostAttach === 'refused') throw new Error('no cgroup v2');
        hostAttach = 'attached';
        log.push('marker host attach');
      },
      detachHost: () => {
        const was = hostAttach === 'attached';
        hostAttach = 'detached';
        log.push('marker host detach');
        return was;
      },
      close: () => log.push('close marker'),
    }),
    detach: (kind, ifname, direction) => (onHooks.delete(`${kind} ${direction} ${ifname}`), log.push(`detach ${kind} ${direction} ${ifname}`), true),
    isAttached: (kind, ifname, direction) => onHooks.has(`${kind} ${direction} ${ifname}`),
    interfaces: () => interfaces.map((i) => ({ ...i })),
    nodeAddresses: () => new Set(nodeAddresses),
    removePins: (pinRoot) => log.push(`remove pins ${pinRoot}`),
    clearAnswerMarks: (pinRoot) => (answerMarks.clear(), log.push(`clear answer marks ${pinRoot}`)),
    nowNs: () => 0n,
  };
  return {
    kernel,
    log,
    onHooks,
    programmed,
    interfaces,
    answerMarks,
    nodeAddresses,
    emit: (e: LearnedEntry) => emit?.(e, 0n),
    refuseHostAttach: () => void (hostAttach = 'refused'),
    hostAttach: () => hostAttach,
  };
}

function setup(membership: LearnedEntry[] = []) {
  const clock = new ManualClock();
  const handle = new FakeNftHandle(clock);
  const fake = fakeKernel(membership);
  const dataplane = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/dnsplane-unit', tcKernel: fake.kernel });
  return { clock, handle, dataplane, ...fake };
}

const entry = (clock: ManualClock, address: string, inMs = 30_500): LearnedEntry => ({
  setId: githubSet.id,
  family: 4,
  address,
  expiresAt: clock.now() + inMs,
});

describe('nftables inline membership (injected kernel)', () => {
  it('attaches the parser on tc ingress of every interface but lo and on egress of non-endpoint ones; marks the workload', async () => {
    const { dataplane, log, programmed } = setup();
    await dataplane.install(baseState());
    expect(log.filter((l) => l.startsWith('parser ')).sort()).toEqual([
      'parser egress eth0',
      'parser ingress eth0',
      'parser ingress veth-web',
    ]);
    expect(log).toContain('marker ingress veth-web');
    expect(programmed.get(7)).toEqual([{ setId: githubSet.id, bit: 0x10000 }]);
    expect((await dataplane.status()).counters['parser.parsed']).toBe(3);
    expect(log).toContain('wake sets '); // the marked set's events do not wake the mirror
  });

  it('untracked DNS: the parser marks verified answers of the egress-enforced workload, before the rules untrack its queries; pruned when it goes', async () => {
    const { dataplane, log, answerMarks } = setup();
    const dns = { trustedServers: [{ family: 4 as const, address: '198.18.53.2', port: 53 }], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 };
    await dataplane.install(baseState({ dns }));
    // veth-web (ifindex 7) is selected in egress; veth-idle (no policy) and the host endpoint are not
    expect([...answerMarks]).toEqual([[7, 0x04000000]]);
    expect((await dataplane.status()).counters['answer_marked_interfaces']).toBe(1);
    expect(dataplane.render(baseState({ dns }))).toMatch(/"untrackedDns": \{\s*"answerMark": "0x04000000",\s*"interfaces": \[\s*"veth-web"\s*\]/);
    log.splice(0);
    const state = baseState({ dns });
    await dataplane.install({ ...state, endpoints: state.endpoints.map((e) => (e.name === 'web' ? { ...e, egressPolicies: [] } : e)) });
    expect(answerMarks.size).toBe(0);
    expect(log).toContain('answer marks  (pruned)');
  });

  it('untrackDns: false (or another answerMark) is what the parser and the rules get', async () => {
    const dns = { trustedServers: [{ family: 4 as const, address: '198.18.53.2', port: 53 }], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 };
    const clock = new ManualClock();
    const off = fakeKernel();
    const tracked = createNftablesDataplane({ tableName: 'dnsplane_tc', handle: new FakeNftHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: off.kernel, untrackDns: false });
    await tracked.install(baseState({ dns }));
    expect(off.answerMarks.size).toBe(0);
    expect(tracked.render(baseState({ dns }))).not.toContain('notrack');
    const other = fakeKernel();
    const moved = createNftablesDataplane({ tableName: 'dnsplane_tc', handle: new FakeNftHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: other.kernel, answerMark: '0x80000000' });
    await moved.install(baseState({ dns }));
    expect([...other.answerMarks]).toEqual([[7, 0x80000000]]);
    expect(() => createNftablesDataplane({ handle: new FakeNftHandle(clock), answerMark: '0x00010000' })).toThrow(/overlaps markMask/);
  });

  it('untrackDns auto: DNS stays tracked while another table gates forwarding, and the drift check asks to decide again when that changes', async () => {
    const dns = { trustedServers: [{ family: 4 as const, address: '198.18.53.2', port: 53 }], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 };
    const clock = new ManualClock();
    const kernel = fakeKernel();
    const handle = new FakeNftHandle(clock);
    const legacy: string[] = [];
    const dataplane = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: kernel.kernel, legacyTables: () => legacy });
    const firewall = { family: 'ip' as const, name: 'filter' };
    const forward = { kind: 'chain' as const, chain: { table: firewall, name: 'FORWARD', base: { type: 'filter' as const, hook: 'forward' as const, priority: 0, policy: 'drop' as const } } };
    const untracking = async (): Promise<boolean> => ((await handle.listTable({ family: 'inet', name: 'dnsplane_tc' }))?.chains ?? []).some((c) => c.name === 'prerouting_untrack');
    const gates = async (): Promise<number | undefined> => (await dataplane.status()).counters['untrack_dns_gates'];

    // nothing else: untracked
    await dataplane.install(baseState({ dns }));
    expect(await untracking()).toBe(true);
    expect(await gates()).toBe(0);
    expect(await dataplane.missingObjects()).toEqual([]);
    // a firewall's forward chain with a drop policy appears: the drift check asks, the install keeps DNS tracked
    await handle.apply(new NftTransaction().add({ kind: 'table', table: firewall }).add(forward));
    expect(await dataplane.missingObjects()).toEqual(['untracked DNS to decide again (untrackDns: auto): came: nft table ip filter: filter chain FORWARD (forward, policy drop)']);
    await dataplane.install(baseState({ dns }));
    expect(await untracking()).toBe(false);
    expect(kernel.answerMarks.size).toBe(0);
    expect(await gates()).toBe(1);
    expect(await dataplane.missingObjects()).toEqual([]);
    // it goes: untracked again after the next install
    await handle.apply(new NftTransaction().delete({ kind: 'table', table: firewall }));
    expect(await dataplane.missingObjects()).toHaveLength(1);
    await dataplane.install(baseState({ dns }));
    expect(await untracking()).toBe(true);
    expect([...kernel.answerMarks]).toEqual([[7, 0x04000000]]);
    // an empty accept chain is no gate; a rule added to it later makes it one
    const empty = { kind: 'chain' as const, chain: { table: firewall, name: 'FORWARD', base: { type: 'filter' as const, hook: 'forward' as const, priority: 0, policy: 'accept' as const } } };
    await handle.apply(new NftTransaction().add({ kind: 'table', table: firewall }).add(empty));
    await dataplane.install(baseState({ dns }));
    expect(await untracking()).toBe(true);
    expect(await dataplane.missingObjects()).toEqual([]);
    await handle.apply(new NftTransaction().add({ kind: 'rule', rule: { table: firewall, chain: 'FORWARD', expr: [{ drop: null }] } }));
    expect(await dataplane.missingObjects()).toEqual(['untracked DNS to decide again (untrackDns: auto): came: rules in nft table ip filter: filter chain FORWARD']);
    await dataplane.install(baseState({ dns }));
    expect(await untracking()).toBe(false);
    await handle.apply(new NftTransaction().delete({ kind: 'table', table: firewall }));
    await dataplane.install(baseState({ dns }));
    expect(await untracking()).toBe(true);
    // an iptables-legacy filter table (rules not visible through nft) gates too
    legacy.push('filter');
    expect(await dataplane.missingObjects()).toEqual(['untracked DNS to decide again (untrackDns: auto): came: an iptables-legacy filter table']);
    await dataplane.install(baseState({ dns }));
    expect(await untracking()).toBe(false);
    await dataplane.install(baseState({ dns })); // still gated: stays tracked
    expect(await untracking()).toBe(false);
    expect(await dataplane.missingObjects()).toEqual([]);
    // untrackDns: true untracks whatever else is there
    const forced = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fakeKernel().kernel, legacyTables: () => legacy, untrackDns: true });
    await forced.install(baseState({ dns }));
    expect(await untracking()).toBe(true);
    expect(await forced.missingObjects()).toEqual([]);
  });

  it('a mark reassigned to another set is cleared from the marker before the rules change, then programmed anew', async () => {
    const { dataplane, log, programmed, handle } = setup();
    const apply = handle.apply.bind(handle);
    handle.apply = (tx) => (log.push('nft apply'), apply(tx));
    const state = baseState();
    // web references s3 alone, then github alone: each takes the lowest bit in turn
    const only = (id: number) =>
      state.policies.map((p) => (p.name === 'web-egress' ? { ...p, egress: [rule(0, { action: 'allow', destination: { ...anyPeer, domainSetId: id } })] } : p));
    await dataplane.install({ ...state, policies: only(s3Set.id) });
    expect(programmed.get(7)).toEqual([{ setId: s3Set.id, bit: 0x00010000 }]);
    log.length = 0;
    await dataplane.install({ ...state, policies: only(githubSet.id) });
    const writes = log.filter((l) => l.startsWith('marker entries 7'));
    // first the old entry goes (its bit would read as github's under the new rules), then github's
    expect(writes).toEqual(['marker entries 7: ', `marker entries 7: ${githubSet.id.toString(16)}=0x10000`]);
    const order = log.filter((l) => l === 'nft apply' || l.startsWith('marker entries 7'));
    expect(order).toEqual(['marker entries 7: ', 'nft apply', `marker entries 7: ${githubSet.id.toString(16)}=0x10000`]);
  });

  it('an endpoint no longer selected loses its marker entry and attachment on the next install', async () => {
    const { dataplane, log, programmed } = setup();
    await dataplane.install(baseState());
    expect(programmed.has(7)).toBe(true);
    const state = baseState();
    await dataplane.install({ ...state, endpoints: state.endpoints.map((e) => (e.name === 'web' ? { ...e, egressPolicies: [] } : e)) });
    expect(programmed.has(7)).toBe(false);
    expect(log).toContain('detach marker ingress veth-web');
    expect(log.some((l) => l.startsWith('detach parser'))).toBe(false); // the parser still watches every interface
  });

  it('an endpoint interface re-created under its name (new index) is programmed and stays attached', async () => {
    const { dataplane, log, programmed, interfaces } = setup();
    await dataplane.install(baseState());
    interfaces[2] = { name: 'veth-web', ifindex: 9 };
    await dataplane.install(baseState());
    expect([...programmed.keys()]).toEqual([9]);
    expect(log.filter((l) => l === 'marker ingress veth-web')).toHaveLength(2);
    expect(log.filter((l) => l.startsWith('detach'))).toEqual([]);
    expect(log.filter((l) => l === 'parser ingress veth-web')).toHaveLength(2);
  });

  it('sets beyond the bit budget are mirror-only: warned at install, counted in status, no mark rule', async () => {
    const clock = new ManualClock();
    const fake = fakeKernel();
    const warnings: string[] = [];
    const logger = { debug: () => undefined, info: () => undefined, error: () => undefined, warn: (_: object, msg: string) => warnings.push(msg) };
    const handle = new FakeNftHandle(clock);
    const dataplane = createNftablesDataplane({
      tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel, markMask: '0x00000100', logger,
    });
    const state = baseState();
    const twoSets = state.policies.map((p) =>
      p.name === 'web-egress' ? { ...p, egress: [...(p.egress ?? []), rule(9, { action: 'allow', destination: { ...anyPeer, domainSetId: s3Set.id } })] } : p,
    );
    await dataplane.install({ ...state, policies: twoSets });
    expect(warnings.some((w) => w.includes('mirror alone'))).toBe(true);
    expect((await dataplane.status()).counters['mirror_only_sets']).toBe(1);
    // the set without a bit (the greedy colouring takes the lower id first) wakes the mirror
    const unmarked = Math.max(githubSet.id, s3Set.id);
    expect(fake.log).toContain(`wake sets ${unmarked}`);
    expect(fake.programmed.get(7)).toHaveLength(1);
    const marks = sortedOperationLines(handle.applied[0]!).filter((line) => line.includes('"mark"')).length;
    expect(marks).toBe(2); // one set, two families
  });

  it('wakes the mirror for every set when there is no marker, and for a host endpoint\'s sets', async () => {
    const clock = new ManualClock();
    const noMarker = fakeKernel();
    const kernel: TcMembershipKernel = {
      ...noMarker.kernel,
      loadMarker: () => {
        throw new NotSupportedError('no marker in this build');
      },
    };
    await createNftablesDataplane({ tableName: 'dnsplane_tc', handle: new FakeNftHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: kernel }).install(
      baseState(),
    );
    expect(noMarker.log).toContain(`wake sets ${githubSet.id},${s3Set.id}`);

    const host = fakeKernel();
    const state = baseState();
    const hostWeb = state.endpoints.map((e) => (e.name === 'web' ? { ...e, host: true } : e));
    await createNftablesDataplane({ tableName: 'dnsplane_tc', handle: new FakeNftHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: host.kernel }).install({
      ...state,
      endpoints: hostWeb,
    });
    expect(host.log).toContain(`wake sets ${githubSet.id}`);
  });

  it('watches only dns.interfaces when given, and follows a change of them at the next install', async () => {
    const clock = new ManualClock();
    const fake = fakeKernel();
    const dataplane = createNftablesDataplane({
      tableName: 'dnsplane_tc', handle: new FakeNftHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel,
    });
    const dns = { ...baseState().dns, interfaces: ['eth0'] };
    await dataplane.install(baseState({ dns }));
    expect([...fake.onHooks].filter((h) => h.startsWith('parser ')).sort()).toEqual(['parser egress eth0', 'parser ingress eth0']);
    // Back to every interface but lo: the parser goes on veth-web too (ingress only: an endpoint).
    await dataplane.install(baseState({ dns: { ...dns, interfaces: [] } }));
    expect([...fake.onHooks].filter((h) => h.startsWith('parser ')).sort()).toEqual(['parser egress eth0', 'parser ingress eth0', 'parser ingress veth-web']);
    // Only veth-web: eth0's filters are taken off.
    await dataplane.install(baseState({ dns: { ...dns, interfaces: ['veth-web'] } }));
    expect([...fake.onHooks].filter((h) => h.startsWith('parser ')).sort()).toEqual(['parser ingress veth-web']);
    expect(fake.log).toContain('detach parser ingress eth0');
  });

  it("a trusted server on the node (a node-local resolver): the parser goes on the endpoints' egress too, and off when it is not the node's", async () => {
    const fake = fakeKernel();
    const clock = new ManualClock();
    const dataplane = createNftablesDataplane({
      tableName: 'dnsplane_tc', handle: new FakeNftHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel,
    });
    const parserHooks = (): string[] => [...fake.onHooks].filter((h) => h.startsWith('parser ')).sort();
    const dns = { ...baseState().dns, trustedServers: [{ family: 4 as const, address: '198.18.254.53', port: 53 }] };
    await dataplane.install(baseState({ dns }));
    expect(parserHooks()).toEqual(['parser egress eth0', 'parser ingress eth0', 'parser ingress veth-web']);
    expect((await dataplane.status()).counters['local_resolvers']).toBe(0);
    // The address comes up on the node (a dummy interface of a node-local cache): the next install
    fake.nodeAddresses.add('198.18.254.53');
    await dataplane.install(baseState({ dns }));
    // …and on lo's ingress, where the node's own lookups through it arrive
    expect(parserHooks()).toEqual(['parser egress eth0', 'parser egress veth-web', 'parser ingress eth0', 'parser ingress lo', 'parser ingress veth-web']);
    expect((await dataplane.status()).counters['local_resolvers']).toBe(1);
    fake.nodeAddresses.delete('198.18.254.53');
    await dataplane.install(baseState({ dns }));
    expect(parserHooks()).toEqual(['parser egress eth0', 'parser ingress eth0', 'parser ingress veth-web']);
    expect(fake.log).toContain('detach parser egress veth-web');
    expect(fake.log).toContain('detach parser ingress lo');
    // A loopback server (systemd-resolved's 127.0.0.53) answers only the node: lo, not the endpoints.
    await dataplane.install(baseState({ dns: { ...dns, trustedServers: [{ family: 4 as const, address: '127.0.0.53', port: 53 }] } }));
    expect(parserHooks()).toEqual(['parser egress eth0', 'parser ingress eth0', 'parser ingress lo', 'parser ingress veth-web']);
    // An explicit list still gets lo's ingress for it: its answers to the node travel nowhere else.
    const loopback = [{ family: 4 as const, address: '127.0.0.53', port: 53 }];
    await dataplane.install(baseState({ dns: { ...dns, trustedServers: loopback, interfaces: ['veth-web'] } }));
    expect(parserHooks()).toEqual(['parser ingress lo', 'parser ingress veth-web']);
    // lo listed: ingress only (a packet on lo passes its egress, then its ingress: parsed once).
    await dataplane.install(baseState({ dns: { ...dns, interfaces: ['lo', 'eth0'] } }));
    expect(parserHooks()).toEqual(['parser egress eth0', 'parser ingress eth0', 'parser ingress lo']);
    expect(fake.log).not.toContain('parser egress lo');
  });

  it('syncs the nft sets from the kernel membership after install (learned while no agent ran), ahead of any later operation', async () => {
    const clock = new ManualClock();
    const { dataplane, handle } = setup([entry(clock, '198.19.9.9')]);
    await dataplane.install(baseState());
    // The catch-up is queued by install(); the dataplane's next operation runs after it.
    expect((await dataplane.status()).learned).toBe(1);
    const set = (await handle.listTable({ family: 'inet', name: 'dnsplane_tc' }))?.sets.find((s) => s.name === 'ds_1a2b_v4');
    expect(set?.elements.map((e) => e.value)).toEqual(['198.19.9.9']);
  });

  it('a catch-up over 10,000 entries does its first part ahead of the next operation, then gives way to the mirror', async () => {
    const clock = new ManualClock();
    const many = Array.from({ length: 25_000 }, (_, i) => entry(clock, `198.18.${i >> 8}.${i & 255}`));
    // Each write takes an event-loop turn, as libnftables' does on its worker thread (the
    // in-memory fake alone finishes within one turn, before any event could arrive).
    class SlowHandle extends FakeNftHandle {
      override async apply(transaction: Parameters<FakeNftHandle['apply']>[0]): Promise<void> {
        await new Promise<void>((resolve) => setImmediate(resolve));
        return super.apply(transaction);
      }
    }
    const handle = new SlowHandle(clock);
    const fake = fakeKernel(many);
    const dataplane = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel });
    const before = handle.applied.length;
    await dataplane.install(baseState());
    fake.emit(entry(clock, '198.19.255.1'));
    const count = async () => (await dataplane.status()).counters['elements.ds_1a2b_v4'] ?? 0;
    // status() runs after the operations queued before it: the first part is in by the first call
    expect(await count()).toBeGreaterThanOrEqual(10_000);
    for (let turn = 0; turn < 10 && (await count()) < 25_001; turn++);
    expect(await count()).toBe(25_001);
    const elementWrites = handle.applied.slice(before).filter((tx) => tx.operations.some((op) => op.object.kind === 'element'));
    expect(elementWrites).toHaveLength(4); // three parts and the mirror's batch
    const mirrorAt = elementWrites.findIndex((tx) => sortedOperationLines(tx).some((l) => l.includes('198.19.255.1')));
    expect(mirrorAt).toBeGreaterThan(0);
    expect(mirrorAt).toBeLessThan(3); // not behind the whole catch-up
  });

  it('mirrors the events of one event-loop turn as one batch, timeouts rounded up to whole seconds', async () => {
    const { dataplane, handle, clock, emit } = setup();
    await dataplane.install(baseState());
    const before = handle.applied.length;
    emit(entry(clock, '198.19.0.1'));
    emit(entry(clock, '198.19.0.2'));
    await new Promise<void>((resolve) => setImmediate(resolve));
    await dataplane.status(); // serialised after the mirror's write
    expect(handle.applied.length).toBe(before + 1);
    const elements = (await handle.listSet({ family: 'inet', name: 'dnsplane_tc' }, 'ds_1a2b_v4'))?.elements ?? [];
    expect(elements.map((e) => [e.value, e.expires])).toEqual([
      ['198.19.0.1', 31],
      ['198.19.0.2', 31],
    ]);
  });

  it('entries that arrive while a batch is being written go out together in the next one', async () => {
    const clock = new ManualClock();
    let release: () => void = () => undefined;
    let writes = 0;
    class GatedHandle extends FakeNftHandle {
      override async apply(transaction: Parameters<FakeNftHandle['apply']>[0]): Promise<void> {
        if (transaction.operations.some((op) => op.object.kind === 'element')) {
          writes++;
          if (writes === 1) await new Promise<void>((resolve) => (release = resolve));
        }
        return super.apply(transaction);
      }
    }
    const handle = new GatedHandle(clock);
    const fake = fakeKernel();
    const dataplane = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel });
    await dataplane.install(baseState());
    fake.emit(entry(clock, '198.19.0.1'));
    await new Promise<void>((resolve) => setImmediate(resolve)); // first batch: its write is held
    fake.emit(entry(clock, '198.19.0.2'));
    await new Promise<void>((resolve) => setImmediate(resolve));
    fake.emit(entry(clock, '198.19.0.3'));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(writes).toBe(1);
    release();
    const deadline = Date.now() + 2000;
    while (writes < 2 && Date.now() < deadline) await new Promise<void>((resolve) => setImmediate(resolve));
    await dataplane.status();
    expect(writes).toBe(2);
    const elements = (await handle.listSet({ family: 'inet', name: 'dnsplane_tc' }, 'ds_1a2b_v4'))?.elements ?? [];
    expect(elements.map((e) => e.value)).toEqual(['198.19.0.1', '198.19.0.2', '198.19.0.3']);
  });

  it('importLearned() writes the kernel membership maps too; exportLearned() merges them with the nft sets', async () => {
    const clock = new ManualClock();
    const membership: LearnedEntry[] = [];
    const fake = fakeKernel(membership);
    const dataplane = createNftablesDataplane({
      tableName: 'dnsplane_tc', handle: new FakeNftHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel,
    });
    await dataplane.install(baseState());
    await dataplane.importLearned([entry(clock, '198.19.7.7'), { ...entry(clock, '198.19.7.8'), setId: 0x999 }]);
    expect(membership.map((m) => m.address)).toEqual(['198.19.7.7']); // unknown set not imported
    membership.push(entry(clock, '198.19.7.9', 50_000)); // learned by the kernel, not mirrored yet
    expect((await dataplane.exportLearned()).map((e) => e.address).sort()).toEqual(['198.19.7.7', '198.19.7.9']);
  });

  it("exportLearned() gives a membership's own expiry, not its element's rounded-up one, so restoring it writes nothing", async () => {
    const clock = new ManualClock();
    const membership: LearnedEntry[] = [];
    const fake = fakeKernel(membership);
    const handle = new FakeNftHandle(clock);
    const dataplane = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel });
    await dataplane.install(baseState());
    const learned = entry(clock, '198.19.7.7', 20_300); // its element: timeout 21 s
    await dataplane.importLearned([learned]);
    clock.advance(200);
    const exported = await dataplane.exportLearned();
    expect(exported).toEqual([learned]);
    const [element] = (await handle.listSet({ family: 'inet', name: 'dnsplane_tc' }, 'ds_1a2b_v4'))?.elements ?? [];
    expect(element).toMatchObject({ value: '198.19.7.7', timeout: 21 });
    // what a restart does with it: the state file and the export, imported again
    const applies = handle.applied.length;
    await dataplane.importLearned([...exported, ...exported]);
    expect(handle.applied.length).toBe(applies);
  });

  it('with the kernel maps loaded, exports read the nft part from what the driver knows, and list the table again after ten minutes', async () => {
    const clock = new ManualClock();
    const membership: LearnedEntry[] = [];
    const fake = fakeKernel(membership);
    let listings = 0;
    class CountingHandle extends FakeNftHandle {
      override async listTable(...args: Parameters<FakeNftHandle['listTable']>) {
        if (args[1]?.elements !== false) listings += 1;
        return super.listTable(...args);
      }
    }
    const handle = new CountingHandle(clock);
    const dataplane = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel });
    await dataplane.install(baseState()); // creates the table: the driver knows every element
    const inKernel = entry(clock, '198.19.7.7', 300_000);
    await dataplane.importLearned([inKernel]);
    const mirrorOnly = entry(clock, '198.19.7.8', 30_500); // in the nft set only (timeout 31 s)
    await dataplane.addLearned([mirrorOnly]);
    const byAddress = (entries: LearnedEntry[]) => entries.map((e) => `${e.address} ${e.expiresAt - clock.now()}`).sort();
    expect(byAddress(await dataplane.exportLearned())).toEqual(['198.19.7.7 300000', '198.19.7.8 31000']);
    clock.advance(30_000);
    expect(byAddress(await dataplane.exportLearned())).toEqual(['198.19.7.7 270000', '198.19.7.8 1000']);
    // a minute past its bound the element is long gone from the kernel, and forgotten: learned
    // again, it is a plain add (no delete of an element the driver still thought was there)
    clock.advance(62_000);
    expect(byAddress(await dataplane.exportLearned())).toEqual(['198.19.7.7 208000']);
    await dataplane.addLearned([entry(clock, '198.19.7.8', 10_000)]);
    expect(sortedOperationLines(handle.applied.at(-1)!).filter((l) => l.startsWith('{"delete"'))).toEqual([]);
    expect(listings).toBe(0);
    clock.advance(508_001); // ten minutes after the table was created: listed again
    await dataplane.exportLearned();
    expect(listings).toBe(1);
  });

  it('a first install puts the inert part in before the parser is ready and the base chains only after the kernel side', async () => {
    const clock = new ManualClock();
    const fake = fakeKernel();
    class OrderedHandle extends FakeNftHandle {
      override async apply(transaction: Parameters<FakeNftHandle['apply']>[0]): Promise<void> {
        const chains = transaction.operations.flatMap((op) => (op.object.kind === 'chain' ? [op.object.chain] : []));
        const base = chains.filter((c) => c.base !== undefined).length;
        fake.log.push(`apply ${chains.length - base} regular, ${base} base chains`);
        return super.apply(transaction);
      }
    }
    let ready: (reused: boolean) => void = () => undefined;
    const parserLoaded = new Promise<boolean>((resolve) => (ready = resolve));
    const dataplane = createNftablesDataplane({
      tableName: 'dnsplane_tc', handle: new OrderedHandle(clock), clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel,
      prepareParser: () => parserLoaded,
    });
    dataplane.prepare();
    const installed = dataplane.install(baseState());
    const deadline = Date.now() + 2000;
    while (fake.log.length === 0 && Date.now() < deadline) await new Promise<void>((resolve) => setImmediate(resolve));
    // The parser is still loading: only the table, its sets and chains no packet reaches are in.
    expect(fake.log).toEqual([expect.stringMatching(/^apply [1-9]\d* regular, 0 base chains$/)]);
    ready(false);
    await installed;
    // forward and input for web's egress; forward, output and input (the node) for ingress
    const hooks = fake.log.indexOf('apply 0 regular, 5 base chains');
    expect(hooks).toBe(fake.log.length - 1);
    // Before the hooks: the parser loaded, configured and attached, the marker programmed and attached.
    expect(fake.log.slice(1, hooks)).toEqual(
      expect.arrayContaining(['load parser /sys/fs/bpf/x', 'domain sets 2', 'parser ingress veth-web', 'marker ingress veth-web']),
    );
  });

  it('a table without base chains (a first install whose second step failed) gets the kernel side before its hooks', async () => {
    const clock = new ManualClock();
    const fake = fakeKernel();
    const events: string[] = [];
    let failHooks = true;
    class FlakyHandle extends FakeNftHandle {
      override async apply(transaction: Parameters<FakeNftHandle['apply']>[0]): Promise<void> {
        const base = transaction.operations.some((op) => op.object.kind === 'chain' && op.object.chain.base !== undefined);
        if (base && failHooks) {
          failHooks = false;
          throw new Error('hooks refused');
        }
        events.push(base ? `hooks after ${fake.log.filter((l) => l.startsWith('load parser')).length} parser loads` : 'inert');
        return super.apply(transaction);
      }
    }
    const handle = new FlakyHandle(clock);
    const dataplane = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel });
    await expect(dataplane.install(baseState())).rejects.toThrow('hooks refused');
    const inert = await handle.listTable({ family: 'inet', name: 'dnsplane_tc' });
    expect(inert?.chains.some((c) => c.base !== undefined)).toBe(false);
    fake.log.splice(0);
    const again = createNftablesDataplane({ tableName: 'dnsplane_tc', handle, clock, pinRoot: '/sys/fs/bpf/x', tcKernel: fake.kernel });
    await again.install(baseState());
    expect(events).toEqual(['inert', 'hooks after 1 parser loads']);
  });

  it('close() stops consuming and leaves tc and pins; remove() detaches everything of ours and removes the pins', async () => {
    const { dataplane, log } = setup();
    await dataplane.install(baseState());
    await dataplane.remove();
    expect(log.filter((l) => l.startsWith('detach')).sort()).toEqual(
      ['eth0', 'lo', 'veth-web'].flatMap((i) => [`detach marker ingress ${i}`, `detach parser egress ${i}`, `detach parser ingress ${i}`]).sort(),
    );
    expect(log.at(-1)).toBe('remove pins /sys/fs/bpf/dnsplane-unit');
    // the shared parser maps a migration keeps mark no answer for the next dataplane
    expect(log).toContain('clear answer marks /sys/fs/bpf/dnsplane-unit');

    const other = setup();
    await other.dataplane.install(baseState());
    await other.dataplane.close();
    expect(other.log).toContain('stop consuming');
    expect(other.log.some((l) => l.startsWith('detach') || l.startsWith('remove pins'))).toBe(false);
  });
});

describe('nftables inline membership: the host endpoint (injected kernel)', () => {
  /** baseState with the node's egress under web-egress (the github set). */
  const hostEgress = (): DesiredState => {
    const state = baseState();
    return { ...state, endpoints: state.endpoints.map((e) => (e.host ? { ...e, egressPolicies: ['web-egress'] } : e)) };
  };

  it('attaches the connect marker and programs the host entry (key 0) with the same mark the rules match', async () => {
    const { dataplane, log, programmed, hostAttach } = setup();
    await dataplane.install(hostEgress());
    expect(hostAttach()).toBe('attached');
    // attached before its entry is written
    expect(log.indexOf('marker host attach')).toBeLessThan(log.findIndex((l) => l.startsWith('marker entries 0:')));
    expect(programmed.get(0)).toEqual([{ setId: githubSet.id, bit: 0x10000 }]);
    expect(programmed.get(7)).toEqual([{ setId: githubSet.id, bit: 0x10000 }]);
    const counters = (await dataplane.status()).counters;
    expect(counters['host_connect_marked']).toBe(1);
    // its UDP still meets the nft set alone: the set wakes the mirror, the endpoint is listed
    expect(counters['mirror_only_endpoints']).toBe(1);
    expect(log).toContain(`wake sets ${githubSet.id}`);
    expect(dataplane.render(hostEgress())).toMatch(/"endpoint": "node",\s*"host": true,\s*"entries": \[\s*\{\s*"setId": 6699,\s*"bit": "0x00010000"/);
  });

  it('loads the connect marker only once a host endpoint needs it (a marker without it is loaded again)', async () => {
    const { dataplane, log, hostAttach } = setup();
    await dataplane.install(baseState());
    expect(log.filter((l) => l.startsWith('load marker'))).toEqual(['load marker']);
    expect(hostAttach()).not.toBe('attached');
    log.splice(0);
    await dataplane.install(hostEgress());
    expect(log.filter((l) => l.startsWith('load marker') || l === 'close marker')).toEqual(['close marker', 'load marker with connect marker']);
    expect(log).toContain('marker ingress veth-web'); // the new load's tc program attached again
    expect(hostAttach()).toBe('attached');
    log.splice(0);
    await dataplane.install(baseState()); // kept loaded as it is
    expect(log.filter((l) => l.startsWith('load marker'))).toEqual([]);
  });

  it('forgets the host entry and detaches the connect marker when the node no longer has domain sets in egress', async () => {
    const { dataplane, log, programmed, hostAttach } = setup();
    await dataplane.install(hostEgress());
    log.splice(0);
    await dataplane.install(baseState());
    expect(programmed.has(0)).toBe(false);
    expect(hostAttach()).toBe('detached');
    expect((await dataplane.status()).counters['host_connect_marked']).toBe(0);
  });

  it('without a cgroup v2 to attach to, the host endpoint keeps the mirror alone: warned, no entry, the rest installed', async () => {
    const { dataplane, programmed, refuseHostAttach } = setup();
    refuseHostAttach();
    await dataplane.install(hostEgress());
    expect(programmed.has(0)).toBe(false);
    expect(programmed.get(7)).toEqual([{ setId: githubSet.id, bit: 0x10000 }]);
    expect((await dataplane.status()).counters['host_connect_marked']).toBe(0);
  });

  it('remove() detaches the connect marker too', async () => {
    const { dataplane, hostAttach } = setup();
    await dataplane.install(hostEgress());
    await dataplane.remove();
    expect(hostAttach()).toBe('detached');
  });
});

describe('missing filters', () => {
  it('names the parser and marker filters someone removed from interfaces still there; an install puts them back', async () => {
    const { dataplane, onHooks, interfaces } = setup();
    expect(await dataplane.missingObjects()).toEqual([]); // nothing installed yet
    await dataplane.install(baseState());
    expect(await dataplane.missingObjects()).toEqual([]);
    // `tc qdisc del dev veth-web clsact`: both of its filters go
    onHooks.delete('marker ingress veth-web');
    onHooks.delete('parser ingress veth-web');
    expect(await dataplane.missingObjects()).toEqual(['tc ingress veth-web dnsplane marker', 'tc ingress veth-web dnsplane parser']);
    // an interface that went is the link watch's, not a missing object
    interfaces.splice(interfaces.findIndex((i) => i.name === 'veth-web'), 1);
    expect(await dataplane.missingObjects()).toEqual([]);
    interfaces.push({ name: 'veth-web', ifindex: 7 });
    await dataplane.install(baseState());
    expect(await dataplane.missingObjects()).toEqual([]);
  });
});
