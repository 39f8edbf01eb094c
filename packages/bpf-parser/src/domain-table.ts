// Encodes DomainSet[] into the kernel's domain table (dnsp_domains + dnsp_patterns), so the
// parser finds every set matching a name with one hash lookup per label boundary of the name,
// whatever the number of domain sets:
//   - an exact name                         → `exact` id at hash(name)
//   - `*.suffix` (one or more labels)       → `anyMany` id at hash(suffix)
//   - `*.suffix` (exactly one label)        → `anyOne` id at hash(suffix)
//   - anything else (`www.*.example.com`, `api-*.example.com`, `*.*.x`, `foo.*`) → a pattern
//     record holding the labels left of its longest literal suffix, checked label by label
//     by a small NFA in the kernel; its index is a `complex` id at hash(literal suffix).
// The kernel bounds: at most DOMAIN_IDS ids per suffix, PATTERN_LABELS labels left of the
// literal suffix, PATTERN_TEXT bytes per glob label, PATTERN_SLOTS_PER_GENERATION complex
// patterns (the table has two generations, see setDomainSets).
import type { DomainPattern, DomainSet, PatternLabel } from '@dnsplane/core';
import { NotSupportedError } from '@dnsplane/core';
import {
  DOMAIN_IDS,
  PATTERN_LABELS,
  PATTERN_SLOTS_PER_GENERATION,
  PATTERN_TEXT,
  PatternLabelKind,
  domainEntryIdCount,
  domainKeyOf,
  encodeDomainEntry,
  encodeDomainKey,
  encodePattern,
  type DomainEntry,
  type PatternRecord,
  type PatternRecordLabel,
  type TableGeneration,
} from './maps.js';
import { cachedNameHash } from './name-hash.js';

export interface DomainTable {
  /** Suffix hash → the ids anchored there. */
  readonly entries: ReadonlyMap<bigint, DomainEntry>;
  /** Complex patterns; the index is the id used in `DomainEntry.complex`. */
  readonly patterns: readonly PatternRecord[];
  /** Suffix hash → the suffix as text ("" for the root), for logs and errors. */
  readonly suffixes: ReadonlyMap<bigint, string>;
  /** Fewest and most labels of any key: the kernel looks only at these label boundaries. */
  readonly minSuffixLabels: number;
  readonly maxSuffixLabels: number;
}

interface MutableEntry {
  exact: Set<number>;
  anyMany: Set<number>;
  anyOne: Set<number>;
  complex: number[];
}

function literalText(label: PatternLabel): string | undefined {
  return label.kind === 'literal' ? label.text : undefined;
}

function recordLabel(label: PatternLabel, where: string): PatternRecordLabel {
  switch (label.kind) {
    case 'literal':
      return { kind: PatternLabelKind.Literal, text: label.text };
    case 'glob': {
      const text = label.parts.join('*');
      if (text.length > PATTERN_TEXT) {
        throw new NotSupportedError(`${where}: the kernel domain table holds glob labels of at most ${PATTERN_TEXT} bytes, "${text}" has ${text.length}`);
      }
      return { kind: PatternLabelKind.Glob, text };
    }
    case 'anyOne':
      return { kind: PatternLabelKind.AnyOne, text: '' };
    case 'anyMany':
      return { kind: PatternLabelKind.AnyMany, text: '' };
  }
}

/**
 * Builds the domain table of `sets`. Throws NotSupportedError (naming the set and the pattern)
 * when a pattern or a suffix exceeds what the kernel table holds; nothing is half-built.
 */
export function buildDomainTable(sets: readonly DomainSet[]): DomainTable {
  const entries = new Map<bigint, MutableEntry>();
  const suffixes = new Map<bigint, string>();
  const patterns: PatternRecord[] = [];
  const complexSeen = new Map<string, number>();
  const labelHashes = new Map<string, bigint>();

  const entryAt = (labels: readonly string[]): MutableEntry => {
    const hash = cachedNameHash(labels, labelHashes);
    const known = suffixes.get(hash);
    const text = labels.join('.');
    if (known !== undefined && known !== text) {
      throw new NotSupportedError(`the names "${known}" and "${text}" have the same 64-bit hash; rename one`);
    }
    suffixes.set(hash, text);
    let entry = entries.get(hash);
    if (entry === undefined) {
      entry = { exact: new Set(), anyMany: new Set(), anyOne: new Set(), complex: [] };
      entries.set(hash, entry);
    }
    return entry;
  };

  const sorted = [...sets].sort((a, b) => a.id - b.id);
  for (const set of sorted) {
    for (const pattern of set.patterns) {
      addPattern(set, pattern);
    }
  }

  function addPattern(set: DomainSet, pattern: DomainPattern): void {
    const where = `domain set ${set.name} (id ${set.id}), pattern "${pattern.text}"`;
    const labels = pattern.labels;
    let literalFrom = labels.length;
    while (literalFrom > 0 && labels[literalFrom - 1]?.kind === 'literal') literalFrom--;
    const suffix = labels.slice(literalFrom).map((l) => literalText(l) ?? '');
    if (literalFrom === 0) {
      entryAt(suffix).exact.add(set.id);
      return;
    }
    const first = labels[0];
    if (literalFrom === 1 && first?.kind === 'anyMany') {
      entryAt(suffix).anyMany.add(set.id);
      return;
    }
    if (literalFrom === 1 && first?.kind === 'anyOne') {
      entryAt(suffix).anyOne.add(set.id);
      return;
    }
    const prefix = labels.slice(0, literalFrom);
    if (prefix.length > PATTERN_LABELS) {
      throw new NotSupportedError(
        `${where}: the kernel domain table checks at most ${PATTERN_LABELS} labels left of the literal suffix, this pattern has ${prefix.length}`,
      );
    }
    const record: PatternRecord = { setId: set.id, labels: prefix.map((label) => recordLabel(label, where)) };
    const key = `${set.id}|${pattern.text}`;
    if (complexSeen.has(key)) return;
    if (patterns.length >= PATTERN_SLOTS_PER_GENERATION) {
      throw new NotSupportedError(`${where}: the kernel domain table holds at most ${PATTERN_SLOTS_PER_GENERATION} patterns with a middle or in-label wildcard`);
    }
    complexSeen.set(key, patterns.length);
    entryAt(suffix).complex.push(patterns.length);
    patterns.push(record);
  }

  const frozen = new Map<bigint, DomainEntry>();
  for (const [hash, entry] of entries) {
    const out: DomainEntry = {
      exact: [...entry.exact].sort((a, b) => a - b),
      anyMany: [...entry.anyMany].sort((a, b) => a - b),
      anyOne: [...entry.anyOne].sort((a, b) => a - b),
      complex: entry.complex,
    };
    if (domainEntryIdCount(out) > DOMAIN_IDS) {
      throw new NotSupportedError(
        `the kernel domain table holds at most ${DOMAIN_IDS} domain sets and patterns per name or wildcard suffix; "${suffixes.get(hash) ?? ''}" has ${domainEntryIdCount(out)}`,
      );
    }
    frozen.set(hash, out);
  }
  const labelCounts = [...frozen.keys()].map((hash) => {
    const text = suffixes.get(hash) ?? '';
    return text === '' ? 0 : text.split('.').length;
  });
  return {
    entries: frozen,
    patterns,
    suffixes,
    minSuffixLabels: labelCounts.length ? Math.min(...labelCounts) : 0,
    maxSuffixLabels: labelCounts.length ? Math.max(...labelCounts) : 0,
  };
}

/**
 * The table as map contents of one generation: dnsp_domains keys (bit 63 = the generation)
 * and values, and dnsp_patterns slots (generation g uses slots from g × 2,048; the complex
 * ids in the entries are those slot numbers). NotSupportedError when two keys are equal
 * without their bit 63 (a 2⁻⁶³ chance).
 */
export interface EncodedDomainTable {
  readonly generation: TableGeneration;
  readonly domains: ReadonlyArray<readonly [Buffer, Buffer]>;
  /** [slot, value] */
  readonly patterns: ReadonlyArray<readonly [number, Buffer]>;
}

export function encodeDomainTable(table: DomainTable, generation: TableGeneration = 0): EncodedDomainTable {
  const base = generation * PATTERN_SLOTS_PER_GENERATION;
  const seen = new Map<bigint, bigint>();
  for (const hash of table.entries.keys()) {
    const key = domainKeyOf(hash, generation);
    const other = seen.get(key);
    if (other !== undefined) {
      throw new NotSupportedError(
        `the names "${table.suffixes.get(other) ?? ''}" and "${table.suffixes.get(hash) ?? ''}" have the same 63-bit hash; rename one`,
      );
    }
    seen.set(key, hash);
  }
  return {
    generation,
    domains: [...table.entries].map(
      ([hash, entry]) =>
        [
          encodeDomainKey(hash, generation),
          // Most entries hold no complex id: no copy of them.
          encodeDomainEntry(base === 0 || entry.complex.length === 0 ? entry : { ...entry, complex: entry.complex.map((id) => id + base) }),
        ] as const,
    ),
    patterns: table.patterns.map((record, index) => [base + index, encodePattern(record)] as const),
  };
}
