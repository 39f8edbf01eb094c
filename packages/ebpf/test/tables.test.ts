import { NotSupportedError } from '@dnsplane/core';
import { describe, expect, it } from 'vitest';
import { HOST_INTERFACES, compilePolicyTables, createEbpfDataplane, encodeNetKey, encodeRule, generationListId } from '@dnsplane/ebpf';
import { anyPeer, baseState, clientEgress, rule } from './fixtures.js';

describe('compilePolicyTables', () => {
  it('renders the golden map contents', async () => {
    const text = createEbpfDataplane({ pinRoot: '/sys/fs/bpf/dnsplane-unit' }).render(baseState());
    await expect(text).toMatchFileSnapshot('golden/render.json');
    expect(() => JSON.parse(text) as unknown).not.toThrow();
  });

  it('maps a workload egress to tc ingress and a host ingress to tc ingress, with both hooks of a selected endpoint', () => {
    const tables = compilePolicyTables(baseState());
    const view = tables.hooks.map((h) => [h.endpoint, h.interface, h.tcDirection, h.direction, h.selected, h.first, h.count]);
    expect(view).toEqual([
      ['client1', 'veth-c1', 'ingress', 'egress', true, 0, 6],
      ['client1', 'veth-c1', 'egress', 'ingress', false, 6, 0],
      ['node', HOST_INTERFACES, 'egress', 'egress', false, 6, 0],
      ['node', HOST_INTERFACES, 'ingress', 'ingress', true, 6, 1],
    ]);
    // The unselected endpoint gets no hook at all; workload interfaces are listed for host hooks to skip.
    expect(tables.workloadInterfaces).toEqual(['veth-c1', 'veth-idle']);
  });

  it('untracks UDP DNS on both hooks of an endpoint whose ingress is unselected, and only there', () => {
    const tables = compilePolicyTables(baseState());
    // client1: egress policies only (the answers pass its unselected ingress); node: an ingress
    // policy, so its DNS stays tracked (an answer is admitted as established).
    expect(tables.hooks.map((h) => [h.endpoint, h.direction, h.dnsUntracked])).toEqual([
      ['client1', 'egress', true],
      ['client1', 'ingress', true],
      ['node', 'egress', false],
      ['node', 'ingress', false],
    ]);
  });

  it('gives Pass the index of the next policy\'s first rule and keeps rule order across policies', () => {
    const tables = compilePolicyTables(baseState());
    const hookRules = tables.rules.slice(0, 6);
    expect(hookRules.map((r) => [r.policy, r.rule, r.action])).toEqual([
      ['pass-first', 0, 'pass'],
      ['pass-first', 1, 'deny'],
      ['client-egress', 0, 'log'],
      ['client-egress', 1, 'allow'],
      ['client-egress', 2, 'allow'],
      ['client-egress', 3, 'deny'],
    ]);
    expect(hookRules[0]?.passTarget).toBe(2);
    expect(hookRules[3]?.destinationDomainSet).toBe(0x51);
    expect(tables.domainSets).toEqual([0x51]);
  });

  it('shares one net list between rules with the same nets, whatever their order', () => {
    const nets = [{ family: 4 as const, text: '198.18.0.0/15' }, { family: 6 as const, text: 'fd00::/8' }];
    const state = baseState({
      policies: [{ name: 'p', order: 1, egress: [rule(0, { action: 'allow', destination: { ...anyPeer, nets } }), rule(1, { action: 'deny', source: { ...anyPeer, notNets: [...nets].reverse() } })] }],
      endpoints: [{ name: 'c', labels: {}, interface: 'c0', host: false, addresses: [], ingressPolicies: [], egressPolicies: ['p'] }],
    });
    const tables = compilePolicyTables(state);
    expect(tables.netLists).toEqual([{ id: 1, cidrs: ['198.18.0.0/15', 'fd00::/8'] }]);
    expect(tables.rules.map((r) => [r.destinationNets, r.sourceNotNets])).toEqual([[1, 0], [0, 1]]);
  });

  it('refuses what the maps cannot hold before anything is written', () => {
    const ports = Array.from({ length: 9 }, (_, i) => ({ first: 1000 + i, last: 1000 + i }));
    const state = baseState({ policies: [{ ...clientEgress, egress: [rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports } })] }] });
    expect(() => compilePolicyTables(state)).toThrow(NotSupportedError);
    expect(() => compilePolicyTables(state)).toThrow(/client-egress egress\[0\] destination.ports: .* at most 8 port ranges/);
    const many = Array.from({ length: 4097 }, (_, i) => rule(i, { action: 'deny' }));
    expect(() => compilePolicyTables(baseState({ policies: [{ ...clientEgress, egress: many }] }))).toThrow(/at most 4096 rules per endpoint/);
  });
});

describe('encoders', () => {
  it('lays a rule out as struct dnsplane_policy_rule', () => {
    const tables = compilePolicyTables(baseState());
    const allow = tables.rules[3];
    if (!allow) throw new Error('no rule');
    const bytes = encodeRule(allow, 1);
    expect(bytes.length).toBe(168);
    expect([bytes[0], bytes[1], bytes[2], bytes[3]]).toEqual([1, 6, 0, 1]); // allow, TCP, any family, egress
    expect([...bytes.subarray(4, 8)]).toEqual([0, 0, 2, 0]); // two destination port ranges
    expect(bytes.readUInt32LE(28)).toBe(0x51);
    expect([bytes.readUInt16LE(40 + 64), bytes.readUInt16LE(42 + 64), bytes.readUInt16LE(44 + 64), bytes.readUInt16LE(46 + 64)]).toEqual([80, 80, 8000, 8100]);
  });

  it('puts the generation in net list ids so generations never share trie entries', () => {
    expect(generationListId(5, 0)).toBe(5);
    expect(generationListId(5, 1)).toBe((1 << 24) | 5);
    expect(generationListId(0, 1)).toBe(0);
    const key = encodeNetKey(3, '198.18.53.0/24', 1);
    expect(key.family).toBe(4);
    expect(key.key.toString('hex')).toBe(`${(32 + 24).toString(16).padStart(2, '0')}000000` + '03000001' + 'c6123500');
    expect(encodeNetKey(3, 'fd00::/8', 0).key.length).toBe(24);
  });
});
