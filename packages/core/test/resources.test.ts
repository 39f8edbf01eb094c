import { describe, expect, it } from 'vitest';
import { issuesToProblems } from '../src/input-issues.js';
import {
  DomainSchema,
  EndpointSchema,
  interfaceNameProblem,
  labelKeyProblem,
  labelValueProblem,
  NetSchema,
  PolicySchema,
  PortSchema,
  ProtocolSchema,
  resourceNameProblem,
} from '../src/resources.js';
import type { z } from 'zod';

function reasons(schema: z.ZodType, value: unknown): string[] {
  const result = schema.safeParse(value, { reportInput: true });
  return result.success ? [] : issuesToProblems(result.error.issues, { file: 'f' }).map((p) => `${p.field}: ${p.reason}`);
}

describe('ProtocolSchema', () => {
  const cases: Array<[unknown, number]> = [
    ['TCP', 6],
    ['tcp', 6],
    ['UDP', 17],
    ['udp', 17],
    ['ICMP', 1],
    ['ICMPv6', 58],
    ['icmpv6', 58],
    ['SCTP', 132],
    ['UDPLite', 136],
    [0, 0],
    [6, 6],
    [255, 255],
  ];
  for (const [input, number] of cases) {
    it(`${JSON.stringify(input)} → ${number}`, () => expect(ProtocolSchema.parse(input)).toBe(number));
  }
  it('rejects unknown names, out-of-range and fractional numbers, other types', () => {
    expect(reasons(ProtocolSchema, 'Tcp')[0]).toMatch(/expected one of "TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite", got the string "Tcp"/);
    expect(reasons(ProtocolSchema, 256)).toEqual([': must be at most 255, got the number 256']);
    expect(reasons(ProtocolSchema, -1)).toEqual([': must be at least 0, got the number -1']);
    expect(reasons(ProtocolSchema, 6.5)).toEqual([': expected an integer, got the number 6.5']);
    expect(reasons(ProtocolSchema, true)[0]).toMatch(/expected a number or one of "TCP".*got true/);
  });
});

describe('PortSchema', () => {
  const cases: Array<[unknown, number, number]> = [
    [1, 1, 1],
    [65535, 65535, 65535],
    ['80', 80, 80],
    ['8000:8080', 8000, 8080],
    ['53:53', 53, 53],
    [' 10 : 20 ', 10, 20],
  ];
  for (const [input, first, last] of cases) {
    it(`${JSON.stringify(input)} → ${first}-${last}`, () => expect(PortSchema.parse(input)).toEqual({ first, last }));
  }
  const bad: Array<[unknown, RegExp]> = [
    [0, /must be at least 1/],
    [65536, /must be at most 65535/],
    [1.5, /expected an integer/],
    ['0:10', /port 0 in "0:10" is outside 1-65535/],
    ['10:65536', /port 65536/],
    ['20:10', /is reversed/],
    ['http', /named ports are not supported/],
    ['80-90', /not a port or a "first:last"/],
    ['', /not a port/],
    ['1:2:3', /not a port/],
    [null, /expected a number or a string, got an empty value/],
  ];
  for (const [input, reason] of bad) {
    it(`rejects ${JSON.stringify(input)}`, () => expect(reasons(PortSchema, input).join('\n')).toMatch(reason));
  }
});

describe('NetSchema', () => {
  const cases: Array<[string, string]> = [
    ['198.18.0.0/15', '198.18.0.0/15'],
    ['198.18.0.1', '198.18.0.1/32'],
    ['198.19.255.255/15', '198.18.0.0/15'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['fd00::/8', 'fd00::/8'],
    ['FD00:0:0:0:0:0:0:1', 'fd00::1/128'],
    ['fd12:3456::1/16', 'fd12::/16'],
    ['::/0', '::/0'],
  ];
  for (const [input, text] of cases) {
    it(`${input} → ${text}`, () => expect(NetSchema.parse(input).text).toBe(text));
  }
  for (const input of ['198.18.0.0/33', 'fd00::/129', '198.18.0.0/', '198.18.0.0/a', 'example.test', '198.18.0', 'fe80::1%eth0', '']) {
    it(`rejects ${JSON.stringify(input)}`, () => expect(reasons(NetSchema, input)[0]).toMatch(/invalid network/));
  }
});

describe('DomainSchema', () => {
  it('reads strings with Calico semantics and objects with Cilium semantics', () => {
    expect(DomainSchema.parse('API.Example.Test.').text).toBe('api.example.test');
    expect(DomainSchema.parse('*.example.test').labels[0]).toEqual({ kind: 'anyMany' });
    expect(DomainSchema.parse({ matchPattern: '*.example.test' }).labels[0]).toEqual({ kind: 'anyOne' });
    expect(DomainSchema.parse({ matchName: 'a.example.test' }).exact).toBe(true);
  });
  it('rejects bad names, both or neither matcher, other types', () => {
    expect(reasons(DomainSchema, 'a..b')[0]).toMatch(/^: invalid domain "a\.\.b": /);
    expect(reasons(DomainSchema, { matchName: '*.a.test' })[0]).toMatch(/invalid domain "\*\.a\.test"/);
    expect(reasons(DomainSchema, {})).toEqual([': write exactly one of matchName or matchPattern']);
    expect(reasons(DomainSchema, { matchName: 'a.test', matchPattern: 'b.test' })).toEqual([': write exactly one of matchName or matchPattern']);
    expect(reasons(DomainSchema, { matchName: 5 })).toEqual(['matchName: expected a string, got the number 5']);
    expect(reasons(DomainSchema, 5)).toEqual([': expected a string or a mapping, got the number 5']);
  });
});

describe('names, labels and interface names', () => {
  it('accepts Kubernetes-style names', () => {
    for (const name of ['a', 'web-egress', 'web.egress.v2', '0abc', 'a'.repeat(253)]) expect(resourceNameProblem(name)).toBeUndefined();
    for (const name of ['', 'Web', 'web_egress', '-a', 'a-', 'a..b', 'a b', 'a'.repeat(254)]) expect(resourceNameProblem(name)).toBeDefined();
  });
  it('accepts Kubernetes label keys and values', () => {
    for (const key of ['app', 'App_1', 'app.kubernetes.io/name', 'example.test/owner', 'a'.repeat(63)]) expect(labelKeyProblem(key)).toBeUndefined();
    for (const key of ['', '-app', 'app-', '/app', 'Example.test/app', 'a/b/c', 'a'.repeat(64), 'app name']) expect(labelKeyProblem(key)).toBeDefined();
    for (const value of ['', 'web', 'v1.2_3-x', 'A'.repeat(63)]) expect(labelValueProblem(value)).toBeUndefined();
    for (const value of ['-web', 'web server', 'a'.repeat(64), 'é']) expect(labelValueProblem(value)).toBeDefined();
  });
  it('follows the kernel interface name rules', () => {
    for (const name of ['eth0', 'dpweb0', 'veth.web-1_x', 'a'.repeat(15), 'br@1']) expect(interfaceNameProblem(name)).toBeUndefined();
    for (const name of ['', '.', '..', 'a'.repeat(16), 'eth0/1', 'eth0:1', 'eth 0', 'tab\t']) expect(interfaceNameProblem(name)).toBeDefined();
    expect(interfaceNameProblem('ééééééééé')).toMatch(/longer than 15 bytes/);
  });
});

describe('PolicySchema', () => {
  const policy = (spec: unknown) => ({ kind: 'Policy', metadata: { name: 'p' }, spec });

  it('defaults types the way Calico does', () => {
    const types = (spec: unknown) => PolicySchema.parse(policy(spec)).spec.types;
    expect(types({})).toEqual(['Ingress']);
    expect(types({ ingress: [{ action: 'Allow' }] })).toEqual(['Ingress']);
    expect(types({ egress: [{ action: 'Allow' }] })).toEqual(['Egress']);
    expect(types({ ingress: [{ action: 'Allow' }], egress: [{ action: 'Allow' }] })).toEqual(['Ingress', 'Egress']);
    expect(types({ types: ['Egress', 'Ingress', 'Egress'] })).toEqual(['Ingress', 'Egress']);
    expect(types({ types: ['Egress'] })).toEqual(['Egress']);
  });

  it('treats a missing or empty selector as all()', () => {
    expect(PolicySchema.parse(policy({})).spec.selector).toEqual({ kind: 'all' });
    expect(PolicySchema.parse(policy({ selector: '' })).spec.selector).toEqual({ kind: 'all' });
  });

  it('accepts domains in Allow, Deny, Log and Pass egress rules, with ports and notNets', () => {
    for (const action of ['Allow', 'Deny', 'Log', 'Pass']) {
      const parsed = PolicySchema.parse(
        policy({ egress: [{ action, protocol: 'TCP', destination: { domains: ['a.example.test'], ports: [443], notNets: ['198.18.0.0/24'] } }] }),
      );
      expect(parsed.spec.egress[0]?.destination.domains?.[0]?.text).toBe('a.example.test');
    }
  });

  it('accepts domains together with nets (both must hold)', () => {
    const parsed = PolicySchema.parse(
      policy({ egress: [{ action: 'Allow', destination: { domains: ['a.example.test'], nets: ['198.18.0.0/15'] } }] }),
    );
    expect(parsed.spec.egress[0]?.destination.nets).toEqual([{ family: 4, text: '198.18.0.0/15' }]);
    expect(parsed.spec.egress[0]?.destination.domains?.length).toBe(1);
  });

  it('accepts ports with protocol numbers 6 and 17', () => {
    const parsed = PolicySchema.parse(
      policy({ egress: [{ action: 'Allow', protocol: 6, destination: { ports: [1] } }, { action: 'Allow', protocol: 17, source: { notPorts: ['1:2'] } }] }),
    );
    expect(parsed.spec.egress.map((r) => r.protocol)).toEqual([6, 17]);
  });

  it('accepts dual-stack nets in one list and ICMP with IPv4 nets', () => {
    expect(
      PolicySchema.safeParse(
        policy({
          ingress: [
            { action: 'Allow', source: { nets: ['198.18.0.0/15', 'fd00::/8'] }, destination: { nets: ['fd00::/8'] } },
            { action: 'Allow', protocol: 'ICMP', source: { nets: ['198.18.0.0/15'] } },
            { action: 'Allow', protocol: 'ICMPv6', source: { nets: ['fd00::/8'] } },
          ],
        }),
      ).success,
    ).toBe(true);
  });

  it('rejects rules that can never do what they say', () => {
    expect(reasons(PolicySchema, policy({ egress: [{ action: 'Allow', protocol: 'ICMPv6', destination: { nets: ['198.18.0.0/15'] } }] }))).toEqual([
      'spec.egress[0].destination.nets: protocol ICMPv6 is IPv6 only but these nets are IPv4: use ICMP',
    ]);
    expect(reasons(PolicySchema, policy({ egress: [{ action: 'Allow', protocol: 'SCTP', destination: { ports: [1] } }] }))).toEqual([
      'spec.egress[0].destination.ports: ports are only valid with protocol TCP or UDP, not protocol 132',
    ]);
  });

  it('reports a selector error with its column', () => {
    const result = PolicySchema.safeParse(policy({ selector: 'a == "b" || (c' }), { reportInput: true });
    expect(result.success).toBe(false);
    if (!result.success) {
      expect(issuesToProblems(result.error.issues, { file: 'f', document: 0 })).toEqual([
        {
          file: 'f',
          document: 0,
          field: 'spec.selector',
          reason: 'invalid selector: expected an operator after label key "c" ("==", "!=", "in", "not in", "contains", "starts with", "ends with"), found end of selector',
          column: 15,
        },
      ]);
    }
  });
});

describe('EndpointSchema', () => {
  it('normalises host and addresses', () => {
    expect(EndpointSchema.parse({ kind: 'Endpoint', metadata: { name: 'e' }, spec: { interface: 'dp0', host: false } }).spec).toEqual({
      interface: 'dp0',
      host: false,
      addresses: [],
    });
    expect(
      EndpointSchema.parse({ kind: 'Endpoint', metadata: { name: 'e' }, spec: { host: true, addresses: ['198.18.0.0/24', 'FD00::1'] } }).spec,
    ).toEqual({
      host: true,
      addresses: [
        { family: 4, text: '198.18.0.0/24' },
        { family: 6, text: 'fd00::1/128' },
      ],
    });
  });

  it('rejects an address with host bits, which is ambiguous for an endpoint', () => {
    expect(reasons(EndpointSchema, { kind: 'Endpoint', metadata: { name: 'e' }, spec: { host: true, addresses: ['fd00::1/64'] } })).toEqual([
      'spec.addresses[0]: address "fd00::1/64" has host bits set: write the address alone or the network fd00::/64',
    ]);
  });
});
