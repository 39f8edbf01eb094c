import { describe, expect, it } from 'vitest';
import { compile, type CompilerInputs } from '../src/compiler.js';
import { DnsplaneConfigSchema } from '../src/config.js';
import type { DesiredState } from '../src/desired-state.js';
import { validateDocuments } from '../src/inputs.js';

/** Policy/Endpoint documents as a user writes them, validated by the real schemas. */
function inputs(documents: readonly unknown[], config: unknown = {}): CompilerInputs {
  const { policies, endpoints } = validateDocuments(
    documents.map((value, document) => ({ file: 'test.yaml', document, value })),
  );
  return { config: DnsplaneConfigSchema.parse(config), policies, endpoints };
}

const policy = (name: string, spec: Record<string, unknown>) => ({ kind: 'Policy', metadata: { name }, spec });
const endpoint = (name: string, labels: Record<string, string>, spec: Record<string, unknown> = {}) => ({
  kind: 'Endpoint',
  metadata: { name, labels },
  spec: { interface: `veth-${name}`.slice(0, 15), addresses: [], ...spec },
});

const webEgress = policy('web-egress', {
  order: 100,
  selector: 'app == "web"',
  egress: [
    {
      action: 'Allow',
      protocol: 'TCP',
      destination: { domains: ['api.github.com', '*.s3.amazonaws.com'], ports: [443] },
    },
    { action: 'Allow', protocol: 'UDP', destination: { nets: ['198.18.0.10/32'], ports: [53] } },
    { action: 'Deny' },
  ],
});

const example = (): CompilerInputs =>
  inputs(
    [
      webEgress,
      policy('log-everything', {
        order: 10,
        selector: 'all()',
        types: ['Ingress', 'Egress'],
        ingress: [{ action: 'Log' }, { action: 'Pass' }],
        egress: [{ action: 'Log' }, { action: 'Pass' }],
      }),
      policy('db-ingress', {
        order: 100,
        selector: 'app == "db"',
        ingress: [
          { action: 'Allow', protocol: 'TCP', source: { nets: ['198.18.1.0/24', 'fd00::/64'] }, destination: { ports: [5432, '6000:6010', 6005] } },
          { action: 'Allow', protocol: 'ICMPv6' },
          { action: 'Deny', protocol: 'ICMP' },
        ],
      }),
      endpoint('web', { app: 'web', tier: 'front' }, { addresses: ['198.18.2.2', 'fd00::2'] }),
      endpoint('db', { app: 'db' }, { addresses: ['198.18.2.3/32'] }),
      endpoint('node', { role: 'node' }, { interface: undefined, host: true, addresses: ['198.18.0.1'] }),
    ],
    { dns: { trustedServers: ['[fd00::10]:53', '198.18.0.10:53', '198.18.0.10'], minTTL: 5 } },
  );

describe('compile', () => {
  it('produces the golden desired state', async () => {
    const state = compile(example());
    await expect(`${JSON.stringify(state, null, 2)}\n`).toMatchFileSnapshot('golden/compiler-example.json');
  });

  it('is deterministic: the same output whatever the input order, run after run', () => {
    const forward = example();
    const reversed: CompilerInputs = {
      config: forward.config,
      policies: [...forward.policies].reverse(),
      endpoints: [...forward.endpoints].reverse(),
    };
    expect(JSON.stringify(compile(reversed))).toBe(JSON.stringify(compile(forward)));
    expect(JSON.stringify(compile(example()))).toBe(JSON.stringify(compile(forward)));
  });

  it('keeps domain-set ids stable when patterns are reordered, repeated or other sets are added', () => {
    const before = compile(example());
    const id = before.domainSets[0]?.id;
    expect(before.domainSets).toHaveLength(1);
    const edited = inputs([
      policy('web-egress', {
        order: 5,
        selector: 'app == "web"',
        egress: [
          // Same patterns, other order and spelling (case, trailing dot), one repeated.
          { action: 'Allow', protocol: 'TCP', destination: { domains: ['*.S3.amazonaws.com.', 'api.github.com', 'API.github.com'], ports: [443] } },
          { action: 'Allow', destination: { domains: ['example.org'] } },
        ],
      }),
      policy('other', { selector: 'all()', egress: [{ action: 'Deny', destination: { domains: ['a.example.net', 'b.example.net'] } }] }),
    ]);
    const after = compile(edited);
    expect(after.domainSets).toHaveLength(3);
    const same = after.domainSets.find((set) => set.patterns.map((p) => p.text).join(',') === '*.s3.amazonaws.com,api.github.com');
    expect(same?.id).toBe(id);
    expect(same?.name).toBe(`ds_${(id ?? 0).toString(16).padStart(8, '0')}`);
  });

  it('shares one domain set between rules with the same patterns', () => {
    const state = compile(
      inputs([
        policy('a', { order: 1, egress: [{ action: 'Allow', destination: { domains: ['x.example.com', 'y.example.com'] } }] }),
        policy('b', { order: 2, egress: [{ action: 'Deny', destination: { domains: ['y.example.com', 'x.example.com'] } }] }),
      ]),
    );
    expect(state.domainSets).toHaveLength(1);
    const ids = state.policies.map((p) => p.egress?.[0]?.destination.domainSetId);
    expect(ids).toEqual([state.domainSets[0]?.id, state.domainSets[0]?.id]);
  });

  it('orders policies by (order, name), unordered policies last', () => {
    const state = compile(
      inputs([
        policy('zeta', { order: 1, ingress: [] }),
        policy('unordered-b', { ingress: [] }),
        policy('alpha', { order: 1, ingress: [] }),
        policy('early', { order: -5.5, ingress: [] }),
        policy('unordered-a', { ingress: [] }),
        policy('late', { order: 1000, ingress: [] }),
        endpoint('w', { app: 'w' }),
      ]),
    );
    const order = ['early', 'alpha', 'zeta', 'late', 'unordered-a', 'unordered-b'];
    expect(state.policies.map((p) => p.name)).toEqual(order);
    expect(state.endpoints[0]?.ingressPolicies).toEqual(order);
  });

  it('selects endpoints per direction and leaves unselected endpoints untouched', () => {
    const state = compile(
      inputs([
        policy('web-in', { selector: 'app == "web"', ingress: [{ action: 'Allow' }] }),
        policy('web-out', { selector: 'app in {"web", "api"} && !has(debug)', egress: [{ action: 'Allow' }] }),
        policy('both', { selector: 'tier == "front"', types: ['Ingress', 'Egress'] }),
        endpoint('web', { app: 'web', tier: 'front' }),
        endpoint('api', { app: 'api' }),
        endpoint('api-debug', { app: 'api', debug: 'true' }),
        endpoint('batch', { app: 'batch' }),
      ]),
    );
    const byName = Object.fromEntries(state.endpoints.map((e) => [e.name, e]));
    expect(byName['web']).toMatchObject({ ingressPolicies: ['both', 'web-in'], egressPolicies: ['both', 'web-out'] });
    expect(byName['api']).toMatchObject({ ingressPolicies: [], egressPolicies: ['web-out'] });
    expect(byName['api-debug']).toMatchObject({ ingressPolicies: [], egressPolicies: [] });
    expect(byName['batch']).toMatchObject({ ingressPolicies: [], egressPolicies: [] });
    // A direction in types without rules applies and allows nothing; a direction not applied is absent.
    const both = state.policies.find((p) => p.name === 'both');
    expect(both).toEqual({ name: 'both', order: Number.MAX_VALUE, ingress: [], egress: [] });
    const webIn = state.policies.find((p) => p.name === 'web-in');
    expect(webIn?.egress).toBeUndefined();
    expect(webIn?.ingress).toHaveLength(1);
  });

  it('preserves Log and Pass in rule order', () => {
    const state = compile(
      inputs([
        policy('p', {
          egress: [{ action: 'Log' }, { action: 'Pass', protocol: 'UDP' }, { action: 'Allow' }, { action: 'Deny' }],
        }),
      ]),
    );
    expect(state.policies[0]?.egress?.map((r) => [r.index, r.action, r.protocol])).toEqual([
      [0, 'log', undefined],
      [1, 'pass', 17],
      [2, 'allow', undefined],
      [3, 'deny', undefined],
    ]);
  });

  it('fixes the family from ICMP/ICMPv6 and from the nets, dropping nets that cannot match', () => {
    const rules = (state: DesiredState) => state.policies[0]?.ingress ?? [];
    const state = compile(
      inputs([
        policy('p', {
          ingress: [
            { action: 'Allow', protocol: 'ICMP', source: { notNets: ['198.18.9.0/24', 'fd00::9/128'] } },
            { action: 'Allow', protocol: 'ICMPv6' },
            { action: 'Allow', source: { nets: ['198.18.0.0/16'] }, destination: { nets: ['198.18.2.0/24', 'fd00::/8'] } },
            { action: 'Allow', source: { nets: ['198.18.0.0/16', 'fd00::/8'] } },
            { action: 'Allow', protocol: 58, source: { nets: ['198.18.0.0/16', 'fd00::/8'] } },
            { action: 'Allow', protocol: 'TCP', destination: { ports: ['8000:8080', 80, '8081', 443, 79] } },
          ],
        }),
      ]),
    );
    const [icmp, icmp6, v4, mixed, v6, ports] = rules(state);
    expect(icmp).toMatchObject({ protocol: 1, family: 4, source: { notNets: [{ family: 4, text: '198.18.9.0/24' }] } });
    expect(icmp6).toMatchObject({ protocol: 58, family: 6 });
    expect(v4).toMatchObject({ family: 4, destination: { nets: [{ family: 4, text: '198.18.2.0/24' }] } });
    expect(mixed?.family).toBeUndefined();
    expect(mixed?.source.nets.map((n) => n.text)).toEqual(['198.18.0.0/16', 'fd00::/8']);
    expect(v6).toMatchObject({ family: 6, source: { nets: [{ family: 6, text: 'fd00::/8' }] } });
    expect(ports?.destination.ports).toEqual([
      { first: 79, last: 80 },
      { first: 443, last: 443 },
      { first: 8000, last: 8081 },
    ]);
  });

  it('sorts and de-duplicates trusted servers', () => {
    const state = compile(example());
    expect(state.dns).toEqual({
      trustedServers: [
        { family: 4, address: '198.18.0.10', port: 53 },
        { family: 6, address: 'fd00::10', port: 53 },
      ],
      minTTL: 5,
      extraTTL: 10,
      maxAddressesPerName: 256,
      interfaces: [],
    });
  });

  it('sorts and de-duplicates the interfaces the parser watches (part of the state: a change installs again)', () => {
    const input = example();
    const state = compile({ ...input, config: { ...input.config, dns: { ...input.config.dns, interfaces: ['wl2', 'eth0', 'wl2'] } } });
    expect(state.dns.interfaces).toEqual(['eth0', 'wl2']);
  });
});
