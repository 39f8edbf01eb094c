// Hand-built desired states for the ebpf driver's tests (the compiler from resources is core's).
import type { CompiledPeer, CompiledPolicy, CompiledRule, DesiredState, DomainSet } from '@dnsplane/core';

export const anyPeer: CompiledPeer = { nets: [], notNets: [], ports: [], notPorts: [] };
export const apiSet: DomainSet = { id: 0x51, name: 'ds_51', patterns: [] };

export function rule(index: number, fields: Partial<CompiledRule> & Pick<CompiledRule, 'action'>): CompiledRule {
  return { index, source: anyPeer, destination: anyPeer, ...fields };
}

export const clientEgress: CompiledPolicy = {
  name: 'client-egress',
  order: 100,
  egress: [
    rule(0, { action: 'log', protocol: 6, destination: { ...anyPeer, ports: [{ first: 8080, last: 8080 }] } }),
    rule(1, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 80, last: 80 }, { first: 8000, last: 8100 }], domainSetId: apiSet.id } }),
    rule(2, {
      action: 'allow',
      protocol: 17,
      destination: { ...anyPeer, nets: [{ family: 4, text: '198.18.53.0/24' }, { family: 6, text: 'fd00:18:53::/64' }], ports: [{ first: 53, last: 53 }] },
    }),
    rule(3, { action: 'deny', protocol: 6, destination: { ...anyPeer, notNets: [{ family: 4, text: '198.19.0.0/16' }] } }),
  ],
};

export const passFirst: CompiledPolicy = {
  name: 'pass-first',
  order: 10,
  egress: [
    rule(0, { action: 'pass', protocol: 6, destination: { ...anyPeer, ports: [{ first: 443, last: 443 }] } }),
    rule(1, { action: 'deny', protocol: 6, source: { ...anyPeer, notPorts: [{ first: 1, last: 1023 }] }, destination: { ...anyPeer, ports: [{ first: 443, last: 443 }] } }),
  ],
};

export const webIngress: CompiledPolicy = {
  name: 'web-ingress',
  order: 20,
  ingress: [rule(0, { action: 'allow', protocol: 6, source: { ...anyPeer, nets: [{ family: 4, text: '198.18.1.0/24' }] }, destination: { ...anyPeer, ports: [{ first: 80, last: 80 }] } })],
};

export function baseState(overrides: Partial<DesiredState> = {}): DesiredState {
  return {
    domainSets: [apiSet],
    policies: [passFirst, webIngress, clientEgress],
    endpoints: [
      {
        name: 'client1',
        labels: { app: 'client' },
        interface: 'veth-c1',
        host: false,
        addresses: [{ family: 4, text: '198.18.1.2/32' }],
        ingressPolicies: [],
        egressPolicies: ['pass-first', 'client-egress'],
      },
      { name: 'node', labels: {}, host: true, addresses: [], ingressPolicies: ['web-ingress'], egressPolicies: [] },
      { name: 'idle', labels: {}, interface: 'veth-idle', host: false, addresses: [], ingressPolicies: [], egressPolicies: [] },
    ],
    dns: { trustedServers: [{ family: 4, address: '198.18.53.2', port: 53 }], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 },
    ...overrides,
  };
}
