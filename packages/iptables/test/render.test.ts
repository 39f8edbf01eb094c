import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createIptablesDataplane, MAX_CHAIN_NAME, renderFresh, compileRuleset, pinnedDomainMatches, DEFAULT_MARKS } from '../src/index.js';
import { emptyState, fullState, peer, port, rule, v4, v6 } from './fixtures.js';
import type { DesiredState } from '@dnsplane/core';

const golden = (name: string): string => readFileSync(new URL(`./golden/${name}`, import.meta.url), 'utf8');
const options = { domainMatches: pinnedDomainMatches('/sys/fs/bpf/dnsplane'), marks: DEFAULT_MARKS };

describe('render (golden)', () => {
  const dataplane = createIptablesDataplane({ pinRoot: '/sys/fs/bpf/dnsplane' });

  it('renders both families of the full state exactly', () => {
    const text = dataplane.render(fullState);
    // Order matters in iptables, so the whole text is compared; the sorted comparison first
    // gives a readable diff of what is missing or extra.
    const sorted = (s: string): string[] => s.split('\n').sort();
    expect(sorted(text)).toEqual(sorted(golden('full-state.restore')));
    expect(text).toBe(golden('full-state.restore'));
  });

  it('labels the two restore inputs with comment lines the tools ignore', () => {
    const text = dataplane.render(fullState);
    expect(text.split('\n').filter((l) => l.startsWith('#'))).toEqual([
      '# iptables-restore --noflush (IPv4)',
      '# ip6tables-restore --noflush (IPv6)',
    ]);
  });

  it('renders only empty dispatch chains and the jumps for an empty state', () => {
    expect(renderFresh(compileRuleset(emptyState, 4, options))).toBe(
      [
        '*filter',
        ':DNSPLANE-INPUT - [0:0]',
        ':DNSPLANE-FORWARD - [0:0]',
        ':DNSPLANE-OUTPUT - [0:0]',
        ':DNSPLANE-ALLOW - [0:0]',
        '-A DNSPLANE-ALLOW -j MARK --set-xmark 0x1000000/0x1000000',
        '-I INPUT 1 -j DNSPLANE-INPUT',
        '-I FORWARD 1 -j DNSPLANE-FORWARD',
        '-I OUTPUT 1 -j DNSPLANE-OUTPUT',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  it('keeps every chain name within 28 characters and every rule within the prefix', () => {
    const text = dataplane.render(fullState);
    for (const line of text.split('\n').filter((l) => l.startsWith(':'))) {
      const name = line.slice(1).split(' ')[0] ?? '';
      expect(name.startsWith('DNSPLANE-')).toBe(true);
      expect(name.length).toBeLessThanOrEqual(MAX_CHAIN_NAME);
    }
    for (const line of text.split('\n').filter((l) => l.startsWith('-A '))) {
      expect(line.startsWith('-A DNSPLANE-')).toBe(true);
    }
  });
});

function withEgress(rules: DesiredState['policies'][number]['egress']): DesiredState {
  return {
    ...emptyState,
    policies: [{ name: 'p', order: 1, ...(rules ? { egress: rules } : {}) }],
    endpoints: [{ name: 'w', labels: {}, interface: 'veth-w', host: false, addresses: [], ingressPolicies: [], egressPolicies: ['p'] }],
  };
}

function policyLines(state: DesiredState, family: 4 | 6): string[] {
  return renderFresh(compileRuleset(state, family, options))
    .split('\n')
    .filter((l) => l.startsWith('-A DNSPLANE-PE-p '))
    .map((l) => l.slice('-A DNSPLANE-PE-p '.length));
}

describe('rule semantics', () => {
  it('splits more than 15 ports (a range counts two) over several multiport rules', () => {
    const ports = Array.from({ length: 20 }, (_, i) => port(5000 + 2 * i));
    const lines = policyLines(withEgress([rule(0, 'allow', { protocol: 17, destination: peer({ ports }) })]), 4);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(`-p udp -m multiport --dports ${ports.slice(0, 15).map((p) => p.first).join(',')} -g DNSPLANE-ALLOW`);
    expect(lines[1]).toBe(`-p udp -m multiport --dports ${ports.slice(15).map((p) => p.first).join(',')} -g DNSPLANE-ALLOW`);
  });

  it('renders a port rule without protocol for both TCP and UDP', () => {
    const lines = policyLines(withEgress([rule(0, 'deny', { destination: peer({ ports: [port(25)] }) })]), 4);
    expect(lines).toEqual(['-p tcp -m multiport --dports 25 -j DROP', '-p udp -m multiport --dports 25 -j DROP']);
  });

  it('refuses ports on a protocol without ports, naming policy and rule', () => {
    expect(() => policyLines(withEgress([rule(3, 'allow', { protocol: 1, destination: peer({ ports: [port(1)] }) })]), 4)).toThrow(
      /policy p egress\[3\]: ports need/,
    );
  });

  it('splits nets by family and drops a rule whose nets are all of the other family', () => {
    const state = withEgress([
      rule(0, 'allow', { destination: peer({ nets: [v4('198.18.0.0/16'), v6('fd00::/16'), v4('198.19.0.0/16')] }) }),
      rule(1, 'deny', { destination: peer({ nets: [v6('fd00:9::/32')] }) }),
    ]);
    expect(policyLines(state, 4)).toEqual(['-d 198.18.0.0/16 -g DNSPLANE-ALLOW', '-d 198.19.0.0/16 -g DNSPLANE-ALLOW']);
    expect(policyLines(state, 6)).toEqual(['-d fd00::/16 -g DNSPLANE-ALLOW', '-d fd00:9::/32 -j DROP']);
  });

  it('crosses source and destination nets and port groups', () => {
    const state = withEgress([
      rule(0, 'allow', {
        protocol: 6,
        source: peer({ nets: [v4('198.18.1.0/24'), v4('198.18.2.0/24')], ports: [port(1024, 65535)] }),
        destination: peer({ nets: [v4('198.18.9.9/32')], ports: [port(443)], notPorts: [port(444)] }),
      }),
    ]);
    expect(policyLines(state, 4)).toEqual([
      '-s 198.18.1.0/24 -d 198.18.9.9/32 -p tcp -m multiport --sports 1024:65535 -m multiport --dports 443 -m multiport ! --dports 444 -g DNSPLANE-ALLOW',
      '-s 198.18.2.0/24 -d 198.18.9.9/32 -p tcp -m multiport --sports 1024:65535 -m multiport --dports 443 -m multiport ! --dports 444 -g DNSPLANE-ALLOW',
    ]);
  });

  it('uses ! -d for one notNet and a RETURN-first sub-chain for several', () => {
    const one = withEgress([rule(0, 'pass', { destination: peer({ notNets: [v4('198.18.0.0/24')] }) })]);
    expect(policyLines(one, 4)).toEqual(['! -d 198.18.0.0/24 -j RETURN']);
    const several = withEgress([
      rule(0, 'log', {
        source: peer({ notNets: [v4('198.18.7.0/24')] }),
        destination: peer({ notNets: [v4('198.18.0.0/24'), v4('198.18.1.0/24')] }),
      }),
    ]);
    const text = renderFresh(compileRuleset(several, 4, options));
    expect(policyLines(several, 4)).toEqual([
      '-j MARK --set-xmark 0x0/0x2000000',
      '-j DNSPLANE-NN-p.e0',
      '-m mark --mark 0x2000000/0x2000000 -j LOG --log-prefix "dnsplane p e0: "',
    ]);
    expect(text.split('\n').filter((l) => l.startsWith('-A DNSPLANE-NN-p.e0 '))).toEqual([
      '-A DNSPLANE-NN-p.e0 -s 198.18.7.0/24 -j RETURN',
      '-A DNSPLANE-NN-p.e0 -d 198.18.0.0/24 -j RETURN',
      '-A DNSPLANE-NN-p.e0 -d 198.18.1.0/24 -j RETURN',
      '-A DNSPLANE-NN-p.e0 -j MARK --set-xmark 0x2000000/0x2000000',
    ]);
  });

  it('moves a notNet to a sub-chain when its side also has nets (one -d per rule)', () => {
    const state = withEgress([rule(0, 'allow', { destination: peer({ nets: [v4('198.18.0.0/16')], notNets: [v4('198.18.1.0/24')] }) })]);
    expect(policyLines(state, 4)).toEqual([
      '-j MARK --set-xmark 0x0/0x2000000',
      '-d 198.18.0.0/16 -j DNSPLANE-NN-p.e0',
      '-m mark --mark 0x2000000/0x2000000 -g DNSPLANE-ALLOW',
    ]);
  });

  it('puts ICMP in iptables only and ICMPv6 in ip6tables only', () => {
    const state = withEgress([rule(0, 'allow', { protocol: 1 }), rule(1, 'allow', { protocol: 58 })]);
    expect(policyLines(state, 4)).toEqual(['-p icmp -g DNSPLANE-ALLOW']);
    expect(policyLines(state, 6)).toEqual(['-p ipv6-icmp -g DNSPLANE-ALLOW']);
  });

  it('matches a domain set with the pinned xt_bpf program of that set', () => {
    const state = withEgress([rule(0, 'allow', { protocol: 6, destination: peer({ domainSetId: 0xab, ports: [port(443)] }) })]);
    const custom = { matchProgramPath: (id: number) => `/pins/set-${id}`, prepare: async () => {} };
    expect(policyLines(state, 4)).toEqual([
      '-p tcp -m multiport --dports 443 -m bpf --object-pinned /sys/fs/bpf/dnsplane/xt_member_000000ab -g DNSPLANE-ALLOW',
    ]);
    const lines = renderFresh(compileRuleset(state, 6, { ...options, domainMatches: custom })).split('\n');
    expect(lines).toContain('-A DNSPLANE-PE-p -p tcp -m multiport --dports 443 -m bpf --object-pinned /pins/set-171 -g DNSPLANE-ALLOW');
  });

  it('leaves a policy without the direction out of the endpoint chain; no chain when none applies', () => {
    const text = renderFresh(compileRuleset(withEgress(undefined), 4, options));
    expect(text).not.toContain('DNSPLANE-FW-w');
    expect(text).not.toContain('DNSPLANE-PE-p');
  });

  it('uses the configured mark bits', () => {
    const text = renderFresh(compileRuleset(fullState, 4, { ...options, marks: { allow: 0x10, match: 0x20 } }));
    expect(text).toContain('-A DNSPLANE-ALLOW -j MARK --set-xmark 0x10/0x10');
    expect(text).toContain('-j MARK --set-xmark 0x0/0x20');
    expect(text).not.toContain('0x1000000');
  });

  it('runs the DNS parser first in each dispatch chain for the trusted servers of the family', () => {
    const state: DesiredState = {
      ...fullState,
      dns: { ...fullState.dns, trustedServers: [{ family: 4, address: '198.18.0.53', port: 53 }, { family: 6, address: 'fd00::53', port: 5353 }] },
    };
    const parsed = (family: 4 | 6, chain: string): string[] =>
      renderFresh(compileRuleset(state, family, { ...options, dnsParserPath: '/sys/fs/bpf/dnsplane/dnsplane_parse_socket' }))
        .split('\n')
        .filter((l) => l.startsWith(`-A ${chain} `))
        .slice(0, 5);
    const bpf = '-m bpf --object-pinned /sys/fs/bpf/dnsplane/dnsplane_parse_socket';
    expect(parsed(4, 'DNSPLANE-FORWARD')).toEqual([
      `-A DNSPLANE-FORWARD -d 198.18.0.53/32 -p udp -m multiport --dports 53 ${bpf}`,
      `-A DNSPLANE-FORWARD -s 198.18.0.53/32 -p udp -m multiport --sports 53 ${bpf}`,
      `-A DNSPLANE-FORWARD -d 198.18.0.53/32 -p tcp -m multiport --dports 53 ${bpf}`,
      `-A DNSPLANE-FORWARD -s 198.18.0.53/32 -p tcp -m multiport --sports 53 ${bpf}`,
      '-A DNSPLANE-FORWARD -j MARK --set-xmark 0x0/0x1000000',
    ]);
    // Loopback crosses OUTPUT and INPUT: only INPUT parses it.
    expect(parsed(6, 'DNSPLANE-OUTPUT')[0]).toBe(`-A DNSPLANE-OUTPUT -d fd00::53/128 ! -o lo -p udp -m multiport --dports 5353 ${bpf}`);
    expect(parsed(6, 'DNSPLANE-INPUT')[1]).toBe(`-A DNSPLANE-INPUT -s fd00::53/128 -p udp -m multiport --sports 5353 ${bpf}`);
    // Without a parser hook nothing of it is rendered.
    expect(renderFresh(compileRuleset(state, 4, options))).not.toContain('dnsplane_parse_socket');
  });

  it('with dns.interfaces listed, parses what the tc hooks would see there (and lo in INPUT), each packet once', () => {
    const path = '/sys/fs/bpf/dnsplane/dnsplane_parse_socket';
    // veth-web is a workload's interface, dp-dns is not
    const state: DesiredState = {
      ...fullState,
      dns: { ...fullState.dns, trustedServers: [{ family: 4, address: '198.18.0.53', port: 53 }], interfaces: ['dp-dns', 'veth-web'] },
    };
    const lines = renderFresh(compileRuleset(state, 4, { ...options, dnsParserPath: path })).split('\n');
    const chain = (name: string): string[] => lines.filter((l) => l.startsWith(`-A ${name} `));
    const bpf = `-m bpf --object-pinned ${path}`;
    // each dispatch chain first jumps to its interface chain, then goes on as before
    expect(chain('DNSPLANE-FORWARD').slice(0, 2)).toEqual(['-A DNSPLANE-FORWARD -j DNSPLANE-DNS-FORWARD', '-A DNSPLANE-FORWARD -j MARK --set-xmark 0x0/0x1000000']);
    expect(chain('DNSPLANE-INPUT')[0]).toBe('-A DNSPLANE-INPUT -j DNSPLANE-DNS-INPUT');
    expect(chain('DNSPLANE-OUTPUT')[0]).toBe('-A DNSPLANE-OUTPUT -j DNSPLANE-DNS-OUTPUT');
    // goto: a packet in by one listed interface and out by another reaches the parser once;
    // a forwarded packet leaving by a workload's interface is not taken (tc takes answers where
    // they come in, and watches a workload's egress only for a server on the node: OUTPUT)
    expect(chain('DNSPLANE-DNS-FORWARD')).toEqual([
      '-A DNSPLANE-DNS-FORWARD -i dp-dns -g DNSPLANE-DNS',
      '-A DNSPLANE-DNS-FORWARD -o dp-dns -g DNSPLANE-DNS',
      '-A DNSPLANE-DNS-FORWARD -i veth-web -g DNSPLANE-DNS',
    ]);
    expect(chain('DNSPLANE-DNS-INPUT')).toEqual([
      '-A DNSPLANE-DNS-INPUT -i dp-dns -g DNSPLANE-DNS',
      '-A DNSPLANE-DNS-INPUT -i veth-web -g DNSPLANE-DNS',
      '-A DNSPLANE-DNS-INPUT -i lo -g DNSPLANE-DNS',
    ]);
    expect(chain('DNSPLANE-DNS-OUTPUT')).toEqual(['-A DNSPLANE-DNS-OUTPUT -o dp-dns -g DNSPLANE-DNS', '-A DNSPLANE-DNS-OUTPUT -o veth-web -g DNSPLANE-DNS']);
    expect(chain('DNSPLANE-DNS')).toEqual([
      `-A DNSPLANE-DNS -d 198.18.0.53/32 -p udp -m multiport --dports 53 ${bpf}`,
      `-A DNSPLANE-DNS -s 198.18.0.53/32 -p udp -m multiport --sports 53 ${bpf}`,
      `-A DNSPLANE-DNS -d 198.18.0.53/32 -p tcp -m multiport --dports 53 ${bpf}`,
      `-A DNSPLANE-DNS -s 198.18.0.53/32 -p tcp -m multiport --sports 53 ${bpf}`,
    ]);
    // the dispatch chains hold no parser rule of their own
    expect(lines.filter((l) => l.includes(bpf) && !l.startsWith('-A DNSPLANE-DNS '))).toEqual([]);
    // no trusted server of the family: nothing of it
    expect(renderFresh(compileRuleset(state, 6, { ...options, dnsParserPath: path }))).not.toContain('DNSPLANE-DNS');
  });

  it('refuses a dns.interfaces name iptables cannot match, naming the field', () => {
    const state: DesiredState = {
      ...fullState,
      dns: { ...fullState.dns, trustedServers: [{ family: 4, address: '198.18.0.53', port: 53 }], interfaces: ['eth0:1'] },
    };
    expect(() => compileRuleset(state, 4, { ...options, dnsParserPath: '/sys/fs/bpf/x/p' })).toThrow(/dns\.interfaces: "eth0:1" is not an interface name/);
  });

  it('refuses an interface name iptables cannot carry, naming the endpoint', () => {
    const state: DesiredState = { ...withEgress([rule(0, 'allow')]), endpoints: [{ name: 'w', labels: {}, interface: 'veth with space', host: false, addresses: [], ingressPolicies: [], egressPolicies: ['p'] }] };
    expect(() => compileRuleset(state, 4, options)).toThrow(/endpoint w: interface "veth with space"/);
  });

  it('refuses mark bits that are not single distinct bits', () => {
    expect(() => createIptablesDataplane({ marks: { allow: 3, match: 4 } })).toThrow(/single bit/);
    expect(() => createIptablesDataplane({ marks: { allow: 4, match: 4 } })).toThrow(/different bits/);
    expect(() => createIptablesDataplane({ marks: { allow: 0x8000_0000, match: 1 } })).not.toThrow();
  });
});
