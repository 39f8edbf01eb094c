// quickPolicy (the common shape of a Policy by hand) against PolicySchema: whenever it returns a
// value, the schema accepts the document and returns the same value (same fields, same order);
// everything else is left to the schema. Mutated documents probe the edges.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseDocuments } from '../src/inputs.js';
import { quickPolicy } from '../src/quick-policy.js';
import { PolicySchema } from '../src/resources.js';

function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const valid = fileURLToPath(new URL('./fixtures/inputs/valid/policies/', import.meta.url));
const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));
const fromFiles = [path.join(valid, 'web.yaml'), path.join(valid, 'team-b/defaults.yml'), path.join(examples, 'policies', 'web-egress.yaml'), path.join(examples, 'policies', 'batch-egress.yaml')]
  .filter((file) => {
    try {
      readFileSync(file);
      return true;
    } catch {
      return false;
    }
  })
  .flatMap((file) => parseDocuments(file, readFileSync(file, 'utf8')).documents.map((d) => d.value))
  .filter((value) => (value as { kind?: unknown }).kind === 'Policy');

// The shape bench:enforce (c) writes, and one with every field the quick path reads.
const written: unknown[] = [
  {
    kind: 'Policy',
    metadata: { name: 'p1' },
    spec: { order: 1, selector: 'app == "bench"', types: ['Egress'], egress: [{ action: 'Allow', protocol: 'TCP', destination: { domains: ['s0.p1.scale.test', '*.p1.scale.test'], ports: [443] } }] },
  },
  {
    apiVersion: 'dnsplane/v1',
    kind: 'Policy',
    metadata: { name: 'every-field', labels: { 'example.com/team': 'a', tier: '' }, annotations: { note: 'free text: anything' } },
    spec: {
      order: -2.5,
      selector: "app in {'a', 'b'} && !has(x)",
      types: ['Ingress', 'Egress'],
      ingress: [{ action: 'Log', protocol: 'icmpv6', source: { nets: ['fd00::/8'] } }, { action: 'Pass' }],
      egress: [
        { action: 'Deny', protocol: 17, source: { ports: ['5353'], notNets: ['198.18.1.1'] }, destination: { nets: ['198.18.0.0/15'], notPorts: [' 1 : 1023 '] } },
        { action: 'Allow', destination: { domains: ['API.Example.TEST.', '*.x.test', 'api-*.example.test'] } },
      ],
    },
  },
  { kind: 'Policy', metadata: { name: 'defaults' }, spec: {} },
  { kind: 'Policy', metadata: { name: 'only-egress' }, spec: { egress: [{ action: 'Allow' }] } },
];

function same(value: unknown): 'quick' | 'schema' {
  const quick = quickPolicy(value);
  const schema = PolicySchema.safeParse(value);
  if (quick === undefined) return 'schema';
  expect(schema.success, JSON.stringify(value)).toBe(true);
  expect(quick).toStrictEqual(schema.data);
  expect(JSON.stringify(quick)).toBe(JSON.stringify(schema.data)); // field order too
  return 'quick';
}

describe('quickPolicy', () => {
  it('returns the schema value for the common shapes', () => {
    expect(fromFiles.length).toBeGreaterThan(0);
    for (const value of written) expect(same(value)).toBe('quick');
    for (const value of fromFiles) same(value); // Cilium domain objects, non-ASCII: may go to the schema
  });

  it('leaves problems and unusual values to the schema', () => {
    const base = written[1] as Record<string, unknown>;
    const cases: unknown[] = [
      { ...base, extra: 1 },
      { ...base, kind: 'Endpoint' },
      { ...base, apiVersion: 'v2' },
      { ...base, metadata: { name: 'Bad_Name' } },
      { ...base, metadata: { name: 'x', labels: { 'bad key!': 'v' } } },
      { ...base, spec: { egress: [{ action: 'Allow', protocol: 'ICMP', destination: { ports: [80] } }] } },
      { ...base, spec: { types: ['Ingress'], egress: [{ action: 'Allow' }] } },
      { ...base, spec: { selector: 'app ==' } },
      { ...base, spec: { egress: [{ action: 'Allow', destination: { domains: [] } }] } },
      { ...base, spec: { egress: [{ action: 'Allow', destination: { domains: ['198.18.0.1'] } }] } },
      { ...base, spec: { egress: [{ action: 'Allow', destination: { domains: ['a..b'] } }] } },
      { ...base, spec: { egress: [{ action: 'Allow', destination: { domains: [{ matchName: 'x.test' }] } }] } },
      { ...base, spec: { ingress: [{ action: 'Allow', destination: { domains: ['x.test'] } }] } },
      { ...base, spec: { ingress: [{ action: 'Allow', source: { nets: ['198.18.0.0/15'] }, destination: { nets: ['fd00::/8'] } }] } },
      { ...base, spec: { egress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: ['9:8', 0, 1.5, '70000'] } }] } },
      { ...base, spec: { order: Infinity } },
      { ...base, spec: { order: null } },
    ];
    for (const value of cases) expect(same(value), JSON.stringify(value)).toBe('schema');
  });

  it('agrees with the schema on 5,000 mutated documents', () => {
    const random = prng(20261202);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    const odd: unknown[] = [
      null, 0, -1, 1.5, 65536, 256, 255, 1, '', ' ', 'x', '*', '0:0', '1:2', '198.18.0.0/99', '198.18.0.1', 'fd00::/8', true, [], {}, [null],
      { a: 1 }, 'app ==', 'a'.repeat(300), 'Allow', 'TCP', 'tcp', 'Ingress', 'Egress', ['Egress', 'Ingress'], ['Ingress'], Number.NaN,
      Infinity, ['x.test'], ['*.x.test', 'y.test'], [443, '80:81'], ['198.18.0.0/16'], { matchName: 'a.test' }, 'dnsplane/v1', 'ICMPv6', 58,
    ];
    const base = [...written, ...fromFiles];
    let quick = 0;
    for (let round = 0; round < 5000; round++) {
      const holder: Record<string, unknown> = { value: structuredClone(pick(base)) };
      let parent: Record<string | number, unknown> = holder;
      let key: string | number = 'value';
      for (let depth = 0; depth < 8; depth++) {
        const current = parent[key];
        if (current === null || typeof current !== 'object' || random() < 0.25) break;
        const keys = Array.isArray(current) ? current.map((_, i) => i) : Object.keys(current);
        if (keys.length === 0) break;
        parent = current as Record<string | number, unknown>;
        key = pick(keys);
      }
      const roll = random();
      if (roll < 0.6) parent[key] = structuredClone(pick(odd));
      else if (roll < 0.8 && !Array.isArray(parent)) delete parent[key];
      else if (!Array.isArray(parent)) parent[`extra${round % 7}`] = pick(odd);
      else parent[key] = structuredClone(pick(odd));
      if (same(holder['value']) === 'quick') quick++;
    }
    // Many mutations stay valid (a label changed, a port replaced): the comparison covered them.
    expect(quick).toBeGreaterThan(300);
  });
});
