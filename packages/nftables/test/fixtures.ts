// Hand-built desired states for the driver's tests (the compiler is tested in core).
import type { CompiledPeer, CompiledPolicy, CompiledRule, DesiredState, DomainSet } from '@dnsplane/core';

export const anyPeer: CompiledPeer = { nets: [], notNets: [], ports: [], notPorts: [] };

export const githubSet: DomainSet = { id: 0x1a2b, name: 'ds_1a2b', patterns: [] };
export const s3Set: DomainSet = { id: 0x3c4d, name: 'ds_3c4d', patterns: [] };

export function rule(index: number, fields: Partial<CompiledRule> & Pick<CompiledRule, 'action'>): CompiledRule {
  return { index, source: anyPeer, destination: anyPeer, ...fields };
}

export const webEgress: CompiledPolicy = {
  name: 'web-egress',
  order: 100,
  egress: [
    rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 443, last: 443 }], domainSetId: githubSet.id } }),
    rule(1, {
      action: 'allow',
      protocol: 17,
      destination: { ...anyPeer, nets: [{ family: 4, text: '198.18.0.53/32' }], ports: [{ first: 53, last: 53 }] },
    }),
    rule(2, { action: 'log' }),
    rule(3, { action: 'deny' }),
  ],
};

export const baseIngress: CompiledPolicy = {
  name: 'base-ingress',
  order: 10,
  ingress: [
    rule(0, {
      action: 'allow',
      protocol: 6,
      source: {
        ...anyPeer,
        nets: [
          { family: 4, text: '198.18.0.0/15' },
          { family: 6, text: 'fd00::/8' },
        ],
        notNets: [{ family: 4, text: '198.18.5.0/24' }],
      },
      destination: { ...anyPeer, ports: [{ first: 22, last: 22 }, { first: 8000, last: 8080 }] },
    }),
    rule(1, { action: 'pass', protocol: 17, destination: { ...anyPeer, notPorts: [{ first: 53, last: 53 }] } }),
    rule(2, { action: 'allow', protocol: 58, family: 6 }),
  ],
};

export function baseState(overrides: Partial<DesiredState> = {}): DesiredState {
  return {
    domainSets: [githubSet, s3Set],
    policies: [baseIngress, webEgress],
    endpoints: [
      {
        name: 'web',
        labels: { app: 'web' },
        interface: 'veth-web',
        host: false,
        addresses: [{ family: 4, text: '198.18.10.2/32' }],
        ingressPolicies: ['base-ingress'],
        egressPolicies: ['web-egress'],
      },
      { name: 'node', labels: {}, host: true, addresses: [], ingressPolicies: ['base-ingress'], egressPolicies: [] },
      { name: 'idle', labels: {}, interface: 'veth-idle', host: false, addresses: [], ingressPolicies: [], egressPolicies: [] },
    ],
    dns: { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 },
    ...overrides,
  };
}

/** A manual clock for timeout tests. */
export class ManualClock {
  constructor(public current = 1_800_000_000_000) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
}
