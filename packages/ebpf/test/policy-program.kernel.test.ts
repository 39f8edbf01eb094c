// The policy programs on crafted packets (BPF_PROG_TEST_RUN): every rule feature, the
// connection table, generations and Log events. A test run's skb belongs to the loopback
// device of this namespace, so the hooks are written for lo's ifindex (1) directly.
import { randomBytes } from 'node:crypto';
import { BpfObjectSpec, DnsParserProgram, RingBufferConsumer, ktimeNs, encodeExpiry, encodeMemberKey, type BpfObject } from '@dnsplane/bpf-parser';
import type { CompiledPolicy, DesiredState } from '@dnsplane/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  POLICY_MAP_NAMES,
  POLICY_OBJECT_PATH,
  POLICY_PROGRAM_NAMES,
  POLICY_COUNTER_NAMES,
  FRAGMENT_COUNTER_NAMES,
  compilePolicyTables,
  decodeLogEvent,
  encodeIndex,
  splitCounters,
  writeGeneration,
} from '@dnsplane/ebpf';
import { anyPeer, apiSet, rule } from './fixtures.js';
import { frame, reply, type Frame } from './packets.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const LO = 1;
const pinRoot = `/sys/fs/bpf/dnsplane-t${randomBytes(4).toString('hex')}`;
let parser: DnsParserProgram;
let policy: BpfObject;

function state(policies: CompiledPolicy[], egress: string[], ingress: string[]): DesiredState {
  return {
    domainSets: [apiSet],
    policies,
    endpoints: [{ name: 'w', labels: {}, interface: 'lo', host: false, addresses: [], ingressPolicies: ingress, egressPolicies: egress }],
    dns: { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 },
  };
}

function install(desired: DesiredState): number {
  const tables = compilePolicyTables(desired);
  return writeGeneration(policy, tables, tables.hooks.map((hook) => ({ hook, ifindex: LO })));
}

/** The workload sends (tc ingress of its interface) / receives (tc egress). */
function sends(f: Frame): number {
  return policy.program(POLICY_PROGRAM_NAMES.ingress).testRun({ data: frame(f) }).retval;
}
function receives(f: Frame): number {
  return policy.program(POLICY_PROGRAM_NAMES.egress).testRun({ data: frame(f) }).retval;
}

function counters(): Record<string, number> {
  return splitCounters(policy.map(POLICY_MAP_NAMES.counters));
}

function learn(address: string, family: 4 | 6, expiresInNs: bigint): void {
  parser.map(family === 4 ? 'members4' : 'members6').update(encodeMemberKey({ setId: apiSet.id, family, address }), encodeExpiry(ktimeNs() + expiresInNs));
}

let port = 30000;
const tcp = (dst: string, dport: number, src = '198.18.1.2'): Frame => ({ src, dst, protocol: 'tcp', sport: port++, dport });

beforeAll(() => {
  parser = DnsParserProgram.load({ pinRoot });
  const spec = BpfObjectSpec.open(POLICY_OBJECT_PATH);
  spec.reuseMaps(pinRoot);
  policy = spec.load();
});

afterAll(() => {
  policy?.close();
  parser?.close();
  DnsParserProgram.removePins(pinRoot);
});

beforeEach(() => {
  const ct = policy.map(POLICY_MAP_NAMES.ct);
  for (const key of ct.keys()) ct.delete(key);
});

describe('policy program (BPF_PROG_TEST_RUN)', () => {
  it('passes everything on an interface with no hook, and non-IP frames', () => {
    install(state([], [], []));
    expect(sends(tcp('198.19.1.1', 80))).toBe(TC_ACT_OK);
  });

  it('allows by domain set membership, expiry checked, and denies the rest by default', () => {
    const egress: CompiledPolicy = {
      name: 'p',
      order: 1,
      egress: [rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 80, last: 80 }], domainSetId: apiSet.id } })],
    };
    install(state([egress], ['p'], []));
    learn('198.19.1.1', 4, 60_000_000_000n);
    learn('198.19.1.2', 4, -1n); // expired
    learn('fd00:19::1:1', 6, 60_000_000_000n);
    const before = counters();
    expect(sends(tcp('198.19.1.1', 80))).toBe(TC_ACT_OK);
    expect(sends({ ...tcp('fd00:19::1:1', 80), src: 'fd00:18:1::2' })).toBe(TC_ACT_OK);
    expect(sends(tcp('198.19.1.1', 81))).toBe(TC_ACT_SHOT); // port
    expect(sends(tcp('198.19.1.2', 80))).toBe(TC_ACT_SHOT); // expired member
    expect(sends(tcp('198.19.1.3', 80))).toBe(TC_ACT_SHOT); // never learned
    expect(sends({ src: '198.18.1.2', dst: '198.19.1.1', protocol: 'udp', sport: 5000, dport: 80 })).toBe(TC_ACT_SHOT); // protocol
    const after = counters();
    expect((after.allowed ?? 0) - (before.allowed ?? 0)).toBe(2);
    expect((after.default_deny ?? 0) - (before.default_deny ?? 0)).toBe(4);
  });

  it('matches nets, notNets, port ranges and notPorts; Deny ends evaluation', () => {
    const p: CompiledPolicy = {
      name: 'nets',
      order: 1,
      egress: [
        rule(0, { action: 'allow', protocol: 17, destination: { ...anyPeer, nets: [{ family: 4, text: '198.18.53.0/24' }, { family: 6, text: 'fd00:18:53::/64' }], ports: [{ first: 53, last: 53 }] } }),
        rule(1, { action: 'deny', protocol: 6, destination: { ...anyPeer, notNets: [{ family: 4, text: '198.19.0.0/16' }] } }),
        rule(2, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 8000, last: 8080 }], notPorts: [{ first: 8010, last: 8010 }] } }),
      ],
    };
    install(state([p], ['nets'], []));
    const udp = (dst: string, src = '198.18.1.2'): Frame => ({ src, dst, protocol: 'udp', sport: port++, dport: 53 });
    expect(sends(udp('198.18.53.2'))).toBe(TC_ACT_OK);
    expect(sends(udp('fd00:18:53::2', 'fd00:18:1::2'))).toBe(TC_ACT_OK);
    expect(sends(udp('198.18.54.2'))).toBe(TC_ACT_SHOT);
    expect(sends(udp('fd00:18:54::2', 'fd00:18:1::2'))).toBe(TC_ACT_SHOT);
    const before = counters();
    expect(sends(tcp('198.18.80.2', 8000))).toBe(TC_ACT_SHOT); // notNets → Deny rule, before the allow
    expect((counters().denied ?? 0) - (before.denied ?? 0)).toBe(1);
    expect(sends(tcp('198.19.1.1', 8000))).toBe(TC_ACT_OK);
    expect(sends(tcp('198.19.1.1', 8080))).toBe(TC_ACT_OK);
    expect(sends(tcp('198.19.1.1', 8010))).toBe(TC_ACT_SHOT); // notPorts
    expect(sends(tcp('198.19.1.1', 8081))).toBe(TC_ACT_SHOT);
  });

  it('Pass skips the rest of its policy and continues with the next one', () => {
    const first: CompiledPolicy = {
      name: 'a',
      order: 1,
      egress: [rule(0, { action: 'pass', protocol: 6, destination: { ...anyPeer, ports: [{ first: 443, last: 443 }] } }), rule(1, { action: 'deny', protocol: 6 })],
    };
    const second: CompiledPolicy = { name: 'b', order: 2, egress: [rule(0, { action: 'allow', protocol: 6 })] };
    install(state([first, second], ['a', 'b'], []));
    expect(sends(tcp('198.19.1.1', 443))).toBe(TC_ACT_OK);
    expect(sends(tcp('198.19.1.1', 444))).toBe(TC_ACT_SHOT);
  });

  it('Log sends an event to the ring buffer and evaluation continues', () => {
    const p: CompiledPolicy = { name: 'logged', order: 1, egress: [rule(0, { action: 'log', protocol: 6 }), rule(1, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 80, last: 80 }] } })] };
    install(state([p], ['logged'], []));
    const records: Buffer[] = [];
    const consumer = new RingBufferConsumer(policy.map(POLICY_MAP_NAMES.log), (r) => records.push(r));
    try {
      consumer.consume();
      records.length = 0;
      expect(sends({ src: '198.18.1.2', dst: '198.19.1.1', protocol: 'tcp', sport: 41000, dport: 80 })).toBe(TC_ACT_OK);
      expect(sends(tcp('198.19.1.1', 81))).toBe(TC_ACT_SHOT);
      consumer.consume();
    } finally {
      consumer.close();
    }
    expect(records.map((r) => decodeLogEvent(r)).map((e) => [e.policyIndex, e.rule, e.direction, e.source, e.sourcePort, e.destination, e.destinationPort])).toEqual([
      [0, 0, 'egress', '198.18.1.2', 41000, '198.19.1.1', 80],
      [0, 0, 'egress', '198.18.1.2', port - 1, '198.19.1.1', 81],
    ]);
  });

  it('passes replies of allowed connections, keeps established flows when the allow goes, and passes IPv6 ND', () => {
    const allow: CompiledPolicy = { name: 'allow-80', order: 1, egress: [rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 80, last: 80 }] } })], ingress: [] };
    install(state([allow], ['allow-80'], ['allow-80'])); // ingress: applies, allows nothing
    const flow = tcp('198.19.1.1', 80);
    expect(sends(flow)).toBe(TC_ACT_OK);
    expect(receives(reply(flow))).toBe(TC_ACT_OK); // reply, through the connection table
    expect(receives({ src: '198.19.1.1', dst: '198.18.1.2', protocol: 'tcp', sport: 80, dport: 55555 })).toBe(TC_ACT_SHOT); // unsolicited
    expect(receives({ src: 'fe80::1', dst: 'ff02::1:ff00:2', protocol: 'icmpv6', type: 135 })).toBe(TC_ACT_OK); // neighbour solicitation
    expect(receives({ src: 'fd00:19::1:1', dst: 'fd00:18:1::2', protocol: 'icmpv6', type: 128 })).toBe(TC_ACT_SHOT); // echo request: policy
    const denyAll: CompiledPolicy = { name: 'deny', order: 1, egress: [], ingress: [] };
    const generation = install(state([denyAll], ['deny'], ['deny']));
    expect(policy.map(POLICY_MAP_NAMES.active).lookup(encodeIndex(0))?.readUInt32LE(0)).toBe(generation);
    expect(sends(flow)).toBe(TC_ACT_OK); // established survives the removed allow
    expect(receives(reply(flow))).toBe(TC_ACT_OK);
    expect(sends(tcp('198.19.1.1', 80))).toBe(TC_ACT_SHOT); // a new connection does not
    expect(counters().established).toBeGreaterThanOrEqual(3);
  });

  it('matches the later fragments of a datagram with the ports of its first (IPv4 and IPv6), and their replies through the connection table', () => {
    // Only the first fragment carries the transport header; netfilter's drivers see the
    // reassembled datagram (conntrack defrag), this one remembers the first fragment's ports.
    const p: CompiledPolicy = {
      name: 'udp-7000',
      order: 1,
      egress: [rule(0, { action: 'allow', protocol: 17, destination: { ...anyPeer, ports: [{ first: 7000, last: 7000 }] } })],
      ingress: [],
    };
    install(state([p], ['udp-7000'], ['udp-7000']));
    const fragmentCounters = (): Record<string, number> => splitCounters(policy.map(POLICY_MAP_NAMES.fragCounters), FRAGMENT_COUNTER_NAMES);
    const before = fragmentCounters();
    let id = 0x4100 + (port % 0x100);
    for (const [src, dst] of [['198.18.1.2', '198.19.1.1'], ['fd00:18:1::2', 'fd00:19::1:1']] as const) {
      const allowed: Frame = { src, dst, protocol: 'udp', sport: port++, dport: 7000 };
      const datagram = (f: Frame, at: number): Array<Frame> => [
        { ...f, fragment: { id: at, offset: 0, more: true } },
        { ...f, fragment: { id: at, offset: 1480, more: true } },
        { ...f, fragment: { id: at, offset: 2960, more: false } },
      ];
      expect(datagram(allowed, ++id).map(sends)).toEqual([TC_ACT_OK, TC_ACT_OK, TC_ACT_OK]);
      // the reply datagram, fragmented too: the connection table admits each fragment
      expect(datagram(reply(allowed), ++id).map(receives)).toEqual([TC_ACT_OK, TC_ACT_OK, TC_ACT_OK]);
      // to a port the policy does not allow: every fragment is dropped, the later ones too
      const denied: Frame = { ...allowed, sport: port++, dport: 7001 };
      expect(datagram(denied, ++id).map(sends)).toEqual([TC_ACT_SHOT, TC_ACT_SHOT, TC_ACT_SHOT]);
      // a later fragment whose first never passed has no ports: no rule with ports matches it
      expect(sends({ ...allowed, fragment: { id: ++id, offset: 1480, more: false } })).toBe(TC_ACT_SHOT);
      // the same identification between other addresses is another datagram
      expect(sends({ ...allowed, src: src.includes(':') ? 'fd00:18:1::3' : '198.18.1.3', fragment: { id: id - 3, offset: 1480, more: false } })).toBe(TC_ACT_SHOT);
    }
    const after = fragmentCounters();
    expect((after.followed ?? 0) - (before.followed ?? 0)).toBe(12); // 2 families × 3 datagrams × 2 later fragments
    expect((after.without_first ?? 0) - (before.without_first ?? 0)).toBe(4);
  });

  it('opens no connection entry for UDP DNS with a trusted server while the ingress is unselected, and does with an ingress policy', () => {
    const servers = [
      { family: 4 as const, address: '198.18.53.2', port: 53 },
      { family: 6 as const, address: 'fd00:18:53::2', port: 53 },
    ];
    const dnsNets = [{ family: 4 as const, text: '198.18.53.0/24' }, { family: 6 as const, text: 'fd00:18:53::/64' }];
    const p: CompiledPolicy = {
      name: 'dns',
      order: 1,
      egress: [
        rule(0, { action: 'allow', protocol: 17, destination: { ...anyPeer, nets: dnsNets, ports: [{ first: 53, last: 53 }] } }),
        rule(1, { action: 'allow', protocol: 6, destination: { ...anyPeer, nets: dnsNets, ports: [{ first: 53, last: 53 }] } }),
      ],
      ingress: [],
    };
    const entries = (): number => [...policy.map(POLICY_MAP_NAMES.ct).keys()].length;
    parser.configure({ trustedServers: servers, minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 });
    try {
      install(state([p], ['dns'], [])); // egress only
      const before = counters();
      for (const [src, server, other] of [['198.18.1.2', '198.18.53.2', '198.18.53.3'], ['fd00:18:1::2', 'fd00:18:53::2', 'fd00:18:53::3']] as const) {
        const query: Frame = { src, dst: server, protocol: 'udp', sport: port++, dport: 53 };
        expect(sends(query)).toBe(TC_ACT_OK);
        expect(receives(reply(query))).toBe(TC_ACT_OK); // the answer, through the unselected ingress
        expect(entries()).toBe(0);
        // the same rules with a server that is not trusted, and TCP DNS: tracked as before
        expect(sends({ ...query, dst: other, sport: port++ })).toBe(TC_ACT_OK);
        expect(sends({ ...query, protocol: 'tcp', sport: port++ })).toBe(TC_ACT_OK);
        expect(entries()).toBe(2);
        for (const key of policy.map(POLICY_MAP_NAMES.ct).keys()) policy.map(POLICY_MAP_NAMES.ct).delete(key);
      }
      const after = counters();
      expect((after.allowed ?? 0) - (before.allowed ?? 0)).toBe(6); // the queries still meet the egress rules
      expect((after.unselected ?? 0) - (before.unselected ?? 0)).toBe(2);
      // a query the rules do not allow is still dropped
      install(state([{ name: 'none', order: 1, egress: [], ingress: [] }], ['none'], []));
      expect(sends({ src: '198.18.1.2', dst: '198.18.53.2', protocol: 'udp', sport: port++, dport: 53 })).toBe(TC_ACT_SHOT);

      // With an ingress policy the answer needs the query's entry: tracked, admitted as established.
      install(state([p], ['dns'], ['dns']));
      const query: Frame = { src: '198.18.1.2', dst: '198.18.53.2', protocol: 'udp', sport: port++, dport: 53 };
      expect(sends(query)).toBe(TC_ACT_OK);
      expect(entries()).toBe(1);
      expect(receives(reply(query))).toBe(TC_ACT_OK);
      expect(receives({ ...reply(query), dport: port++ })).toBe(TC_ACT_SHOT); // no query from that port
    } finally {
      parser.configure({ trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 });
    }
  });

  it('a generation flip replaces the whole rule set (no leftovers of the previous install)', () => {
    const a: CompiledPolicy = { name: 'a', order: 1, egress: [rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, nets: [{ family: 4, text: '198.19.1.0/24' }] } })] };
    const b: CompiledPolicy = { name: 'b', order: 1, egress: [rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, nets: [{ family: 4, text: '198.19.2.0/24' }] } })] };
    install(state([a], ['a'], []));
    expect(sends(tcp('198.19.1.1', 80))).toBe(TC_ACT_OK);
    install(state([b], ['b'], []));
    expect(sends(tcp('198.19.1.1', 80))).toBe(TC_ACT_SHOT);
    expect(sends(tcp('198.19.2.1', 80))).toBe(TC_ACT_OK);
    install(state([a], ['a'], []));
    expect(sends(tcp('198.19.2.1', 80))).toBe(TC_ACT_SHOT);
    expect(sends(tcp('198.19.1.1', 80))).toBe(TC_ACT_OK);
    expect(POLICY_COUNTER_NAMES).toContain('default_deny');
  });
});
