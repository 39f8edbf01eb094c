// The domain-table encoder: how DomainSet patterns land in dnsp_domains / dnsp_patterns,
// and the limits it refuses with a clear error. Pure (no kernel); the kernel side of the
// same table is exercised by parser-differential.kernel.test.ts.
import { isNotSupported, parseDomainPattern, type DomainSet } from '@dnsplane/core';
import { describe, expect, it } from 'vitest';
import {
  DOMAIN_IDS,
  KEY_GENERATION_BIT,
  PATTERN_SLOTS_PER_GENERATION,
  PatternLabelKind,
  buildDomainTable,
  decodeDomainEntry,
  decodePattern,
  domainKeyOf,
  encodeDomainTable,
  cachedNameHash,
  nameHash,
} from '../src/index.js';

const set = (id: number, flavor: 'calico' | 'cilium-pattern' | 'cilium-name', ...patterns: string[]): DomainSet => ({
  id,
  name: `ds_${id}`,
  patterns: patterns.map((p) => parseDomainPattern(p, flavor)),
});

const at = (name: string): bigint => nameHash(name === '' ? [] : name.split('.'));

describe('buildDomainTable', () => {
  it('puts exact names, both wildcard readings and complex patterns under their literal suffix', () => {
    const table = buildDomainTable([
      set(1, 'calico', 'www.example.com'),
      set(2, 'calico', '*.example.com'),
      set(3, 'cilium-pattern', '*.example.com'),
      set(4, 'calico', 'www.*.example.com'),
      set(5, 'cilium-pattern', 'api-*.example.com'),
    ]);
    expect(table.entries.get(at('www.example.com'))).toEqual({ exact: [1], anyMany: [], anyOne: [], complex: [] });
    const suffix = table.entries.get(at('example.com'));
    expect(suffix).toEqual({ exact: [], anyMany: [2], anyOne: [3], complex: [0, 1] });
    expect(table.patterns[0]).toEqual({
      setId: 4,
      labels: [
        { kind: PatternLabelKind.Literal, text: 'www' },
        { kind: PatternLabelKind.AnyMany, text: '' },
      ],
    });
    expect(table.patterns[1]).toEqual({ setId: 5, labels: [{ kind: PatternLabelKind.Glob, text: 'api-*' }] });
    expect(table.minSuffixLabels).toBe(2);
    expect(table.maxSuffixLabels).toBe(3);
  });

  it('anchors patterns without a literal suffix at the root', () => {
    const table = buildDomainTable([set(7, 'cilium-pattern', '*'), set(8, 'calico', 'edge.*')]);
    expect(table.entries.get(at(''))).toEqual({ exact: [], anyMany: [7], anyOne: [], complex: [0] });
    expect(table.minSuffixLabels).toBe(0);
  });

  it('lists each set once per entry however many of its patterns land there, sets by id', () => {
    const table = buildDomainTable([set(9, 'calico', 'a.example', 'A.example.'), set(3, 'calico', 'a.example')]);
    expect(table.entries.get(at('a.example'))?.exact).toEqual([3, 9]);
  });

  it('hashes names case-insensitively, as the kernel does with DNS 0x20 names', () => {
    expect(nameHash(['WwW', 'Example', 'COM'])).toBe(nameHash(['www', 'example', 'com']));
    expect(nameHash(['ok', 'example'])).not.toBe(nameHash(['evilok', 'example']));
    expect(nameHash(['ab'])).not.toBe(nameHash(['ab\u0000']));
  });

  it('hashes names with a shared label cache exactly as without it', () => {
    const cache = new Map<string, bigint>();
    const names = ['www.example.com', 'api.example.com', 'WWW.Example.COM', 'com', 'a.b.c.d.e.f.example.org', 'x'.repeat(63) + '.example.com'];
    for (const name of [...names, ...names]) expect(cachedNameHash(name.split('.'), cache)).toBe(nameHash(name.split('.')));
    expect(cachedNameHash([], cache)).toBe(nameHash([]));
    expect(cache.get('example')).toBeDefined();
  });

  it('refuses a suffix holding more ids than a kernel entry, naming it', () => {
    const sets = Array.from({ length: DOMAIN_IDS + 1 }, (_, i) => set(i + 1, 'calico', 'crowded.example'));
    expect(() => buildDomainTable(sets)).toThrow(/at most 62 domain sets .* "crowded\.example" has 63/);
    try {
      buildDomainTable(sets);
    } catch (error) {
      expect(isNotSupported(error)).toBe(true);
    }
  });

  it('refuses complex patterns with more than 8 labels left of the literal suffix, naming set and pattern', () => {
    const long = `${Array.from({ length: 9 }, () => '*').join('.')}.example`;
    expect(() => buildDomainTable([set(5, 'cilium-pattern', long)])).toThrow(/domain set ds_5 \(id 5\), pattern "cilium:\*(\.\*){8}\.example": .* at most 8 labels/);
  });

  it('encodes entries and patterns that decode back to the same table, in either generation', () => {
    const table = buildDomainTable([set(1, 'calico', '*.example.com', 'x*1.*'), set(2, 'calico', 'www.example.com')]);
    for (const generation of [0, 1] as const) {
      const encoded = encodeDomainTable(table, generation);
      expect(encoded.generation).toBe(generation);
      const base = generation * PATTERN_SLOTS_PER_GENERATION;
      const byKey = new Map(encoded.domains.map(([key, value]) => [key.readBigUInt64LE(0), value]));
      expect(byKey.size).toBe(table.entries.size);
      for (const [hash, entry] of table.entries) {
        const key = domainKeyOf(hash, generation);
        expect(key & KEY_GENERATION_BIT).toBe(generation === 1 ? KEY_GENERATION_BIT : 0n);
        const value = byKey.get(key);
        expect(value, `key of ${table.suffixes.get(hash)}`).toBeDefined();
        expect(decodeDomainEntry(value as Buffer)).toEqual({ ...entry, complex: entry.complex.map((id) => id + base) });
      }
      expect(encoded.patterns.map(([slot]) => slot)).toEqual(table.patterns.map((_, i) => base + i));
      expect(encoded.patterns.map(([, value]) => decodePattern(value))).toEqual(table.patterns);
    }
  });
});
