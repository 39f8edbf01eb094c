// Desired states shared by the unit tests.
import type { Cidr, CompiledPeer, CompiledRule, DesiredState, PortRange } from '@dnsplane/core';

export const v4 = (text: string): Cidr => ({ family: 4, text });
export const v6 = (text: string): Cidr => ({ family: 6, text });
export const port = (first: number, last: number = first): PortRange => ({ first, last });

export function peer(parts: Partial<CompiledPeer> = {}): CompiledPeer {
  return { nets: [], notNets: [], ports: [], notPorts: [], ...parts };
}

export function rule(index: number, action: CompiledRule['action'], parts: Partial<Omit<CompiledRule, 'index' | 'action'>> = {}): CompiledRule {
  return { index, action, source: peer(), destination: peer(), ...parts };
}

export const dns = { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 } as const;

/** One workload with egress and ingress policies, a host endpoint, an unselected workload. */
export const fullState: DesiredState = {
  domainSets: [{ id: 0x1234abcd, name: 'ds_1234abcd', patterns: [] }],
  policies: [
    {
      name: 'web-egress',
      order: 100,
      egress: [
        rule(0, 'allow', { protocol: 6, destination: peer({ domainSetId: 0x1234abcd, ports: [port(443)] }) }),
        rule(1, 'allow', { protocol: 17, destination: peer({ nets: [v4('198.18.0.10/32'), v6('fd00::10/128')], ports: [port(53)] }) }),
        rule(2, 'log'),
        rule(3, 'deny'),
      ],
    },
    {
      name: 'web-ingress',
      order: 200,
      ingress: [
        rule(0, 'allow', {
          protocol: 6,
          source: peer({ nets: [v4('198.18.1.0/24'), v6('fd00:1::/64')] }),
          destination: peer({ ports: [port(80), port(8000, 8080)] }),
        }),
        rule(1, 'pass', { source: peer({ notNets: [v4('198.18.2.0/24')] }) }),
        rule(2, 'allow', { protocol: 1, family: 4 }),
        rule(3, 'allow', { protocol: 58, family: 6 }),
      ],
    },
    {
      name: 'ports-and-exclusions-with-a-rather-long-name',
      order: 300,
      ingress: [
        rule(0, 'allow', {
          protocol: 6,
          destination: peer({ ports: Array.from({ length: 14 }, (_, i) => port(1000 + i)).concat([port(2000, 2100), port(3000)]) }),
        }),
        rule(1, 'deny', { source: peer({ notNets: [v4('198.18.3.0/24'), v4('198.18.4.0/24'), v6('fd00:3::/64')] }) }),
        rule(2, 'log', { destination: peer({ notPorts: [port(22)] }) }),
      ],
      egress: [],
    },
  ],
  endpoints: [
    {
      name: 'web',
      labels: { app: 'web' },
      interface: 'veth-web',
      host: false,
      addresses: [v4('198.18.5.2/32')],
      ingressPolicies: ['web-ingress', 'ports-and-exclusions-with-a-rather-long-name'],
      egressPolicies: ['web-egress'],
    },
    {
      name: 'node',
      labels: { role: 'node' },
      host: true,
      addresses: [],
      ingressPolicies: ['ports-and-exclusions-with-a-rather-long-name'],
      egressPolicies: ['ports-and-exclusions-with-a-rather-long-name'],
    },
    { name: 'idle', labels: {}, interface: 'veth-idle', host: false, addresses: [], ingressPolicies: [], egressPolicies: [] },
  ],
  dns,
};

export const emptyState: DesiredState = { domainSets: [], policies: [], endpoints: [], dns };
