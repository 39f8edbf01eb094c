import { describe, expect, it } from 'vitest';
import type { CompiledEndpoint, CompiledPolicy, DesiredState, DomainSet } from '@dnsplane/core';
import { ENDPOINT_SETS_MAX, entryMark, validateEndpointSets } from '@dnsplane/bpf-parser';
import {
  DEFAULT_ANSWER_MARK,
  DEFAULT_MARK_MASK,
  MARKED_SETS_PER_ENDPOINT,
  assignMarkBits,
  fieldCodes,
  markAssignmentJson,
  markMatchOf,
  maskBits,
  parseAnswerMark,
  parseMarkMask,
} from '../src/mark-bits.js';
import { renderRule } from '../src/render-rules.js';
import { anyPeer, baseState, githubSet, rule } from './fixtures.js';

const set = (id: number): DomainSet => ({ id, name: `ds_${id.toString(16)}`, patterns: [] });
const policy = (name: string, setIds: number[]): CompiledPolicy => ({
  name,
  order: 1,
  egress: setIds.map((id, index) => rule(index, { action: 'allow', destination: { ...anyPeer, domainSetId: id } })),
});
const workload = (name: string, egressPolicies: string[], host = false): CompiledEndpoint => ({
  name,
  labels: {},
  ...(host ? {} : { interface: `veth-${name}` }),
  host,
  addresses: [],
  ingressPolicies: [],
  egressPolicies,
});
function state(policies: CompiledPolicy[], endpoints: CompiledEndpoint[]): DesiredState {
  const ids = [...new Set(policies.flatMap((p) => (p.egress ?? []).flatMap((r) => r.destination.domainSetId ?? [])))];
  return { ...baseState(), domainSets: ids.map(set), policies, endpoints };
}

describe('mark masks', () => {
  it('parses config text and numbers, and refuses empty or oversized masks', () => {
    expect(parseMarkMask('0x00ff0000')).toBe(0x00ff0000);
    expect(parseMarkMask(0x80000000)).toBe(0x80000000);
    expect(() => parseMarkMask('0x0')).toThrow(/markMask/);
    expect(() => parseMarkMask('ff')).toThrow(/markMask/);
    expect(() => parseMarkMask(2 ** 32)).toThrow(/markMask/);
    expect(maskBits(0x00030000)).toEqual([0x10000, 0x20000]);
    expect(maskBits(0x80000001)).toEqual([1, 0x80000000]);
  });
});

describe('assignMarkBits (greedy colouring)', () => {
  it('gives sets of one endpoint distinct bits and a set the same bit everywhere', () => {
    const s = state(
      [policy('a', [1, 2]), policy('b', [2, 3]), policy('c', [4])],
      [workload('w1', ['a']), workload('w2', ['b']), workload('w3', ['c', 'a'])],
    );
    const marks = assignMarkBits(s, 0x00ff0000);
    for (const endpoint of marks.endpoints) {
      const bits = endpoint.entries.map((e) => ('bit' in e ? e.bit : undefined));
      expect(bits).not.toContain(undefined); // one mask: every entry is a bit, none a code
      expect(new Set(bits).size).toBe(bits.length);
      for (const entry of endpoint.entries) expect(marks.bits.get(entry.setId)).toBe('bit' in entry ? entry.bit : undefined);
    }
    // sets 1 and 3 never share an endpoint: the greedy colouring reuses a bit for them
    expect(marks.bits.get(1)).toBe(marks.bits.get(3));
    expect(marks.overflow).toEqual([]);
    expect(marks.mirrorOnlySets).toEqual([]);
    expect(marks.endpoints.map((e) => [e.endpoint, e.entries.map((x) => x.setId)])).toEqual([
      ['w1', [1, 2]],
      ['w2', [2, 3]],
      ['w3', [1, 2, 4]],
    ]);
  });

  it('is deterministic whatever the order of endpoints and policies', () => {
    const policies = [policy('a', [5, 6, 7]), policy('b', [7, 8])];
    const endpoints = [workload('x', ['a']), workload('y', ['b'])];
    const one = markAssignmentJson(assignMarkBits(state(policies, endpoints)));
    const two = markAssignmentJson(assignMarkBits(state([...policies].reverse(), [...endpoints].reverse())));
    expect(two).toEqual(one);
  });

  it('leaves the sets beyond the bit budget without a bit (mirror only)', () => {
    const s = state([policy('a', [1, 2, 3])], [workload('w', ['a'])]);
    const marks = assignMarkBits(s, 0x00030000);
    expect([...marks.bits.values()].sort((a, b) => a - b)).toEqual([0x10000, 0x20000]);
    expect(marks.overflow).toHaveLength(1);
    expect(marks.endpoints[0]?.entries).toHaveLength(2);
    expect(marks.mirrorOnlySets).toEqual(marks.overflow);
  });

  it('keeps its entries within what the marker holds per interface', () => {
    expect(MARKED_SETS_PER_ENDPOINT).toBe(ENDPOINT_SETS_MAX);
  });

  it('codes: the values of a field with two or more bits', () => {
    expect(fieldCodes(0x3)).toEqual([0x3]);
    expect(fieldCodes(0x00f00000)).toHaveLength(11);
    expect(fieldCodes(0x00ff0000)).toHaveLength(247);
    expect(fieldCodes(0x00ff0000).every((c) => (c & (c - 1)) !== 0 && ((c & 0x00ff0000) >>> 0) === c)).toBe(true);
    const wide = fieldCodes(0xffffffff);
    expect(wide).toHaveLength(1024);
    expect(wide.slice(0, 3)).toEqual([0x3, 0x5, 0x6]);
    expect(wide.every((c, i) => i === 0 || c > wide[i - 1]!)).toBe(true);
  });

  it('a full 32-bit mask: codes past the 32 bits; past 64 sets every field width is tried without enumerating 2^32 values', () => {
    const forty = assignMarkBits(state([policy('p40', Array.from({ length: 40 }, (_, i) => 100 + i))], [workload('w', ['p40'])]), 0xffffffff);
    expect(forty.overflow).toEqual([]);
    expect(forty.endpoints[0]?.entries).toHaveLength(40);
    expect(() => validateEndpointSets({ markMask: forty.markMask, entries: forty.endpoints[0]?.entries ?? [] })).not.toThrow();
    const seventy = assignMarkBits(state([policy('p70', Array.from({ length: 70 }, (_, i) => 100 + i))], [workload('w', ['p70'])]), 0xffffffff);
    expect(seventy.endpoints[0]?.entries).toHaveLength(64);
    expect(seventy.overflow).toHaveLength(6);
  });

  it('an endpoint with more sets than bits: a code field at the top of the mask marks the rest', () => {
    const ids = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22];
    const s = state([policy('many', ids)], [workload('w', ['many'])]);
    const marks = assignMarkBits(s, 0x00ff0000);
    expect(marks.overflow).toEqual([]);
    expect(marks.mirrorOnlySets).toEqual([]);
    // 2 bits + 1 code, 3 bits... a 4-bit field: 4 single bits + 11 codes ≥ 12 sets, the narrowest that fits
    expect(marks.codeMask).toBe(0x00f00000);
    expect([...marks.bits.values()].sort((a, b) => a - b)).toEqual([0x10000, 0x20000, 0x40000, 0x80000]);
    expect(marks.codes.size).toBe(8);
    const entries = marks.endpoints[0]?.entries ?? [];
    expect(entries).toHaveLength(12);
    // bits first, then codes in rule order (policy 'many' lists the sets in ids order)
    expect(entries.slice(0, 4).every((e) => 'bit' in e)).toBe(true);
    expect(entries.slice(4).map((e) => e.setId)).toEqual(ids.filter((id) => marks.codes.has(id)));
    // what the marker is programmed with passes its own validation
    expect(() => validateEndpointSets({ markMask: marks.markMask, entries })).not.toThrow();
    for (const id of ids) {
      const m = markMatchOf(marks, id);
      expect(m, String(id)).toBeDefined();
      if (marks.codes.has(id)) expect(m).toEqual({ mask: 0x00f00000, value: marks.codes.get(id) });
      else expect(m).toEqual({ mask: marks.bits.get(id), value: marks.bits.get(id) });
    }
    expect(markAssignmentJson(marks)).toMatchObject({ codeMask: '0x00f00000' });
  });

  it('codes are coloured like bits: one code per set everywhere, distinct within an endpoint', () => {
    const s = state(
      [policy('a', [1, 2, 3, 4, 5]), policy('b', [4, 5, 6, 7, 8])],
      [workload('w1', ['a']), workload('w2', ['b'])],
    );
    const marks = assignMarkBits(s, 0x0000000f);
    expect(marks.overflow).toEqual([]);
    for (const endpoint of marks.endpoints) {
      const values = endpoint.entries.map(entryMark);
      expect(new Set(values).size).toBe(values.length);
      expect(() => validateEndpointSets({ markMask: marks.markMask, entries: endpoint.entries })).not.toThrow();
    }
  });

  it('an endpoint past the marker\'s 64 entries: the rest is mirror-only', () => {
    const ids = Array.from({ length: 70 }, (_, i) => 100 + i);
    const s = state([policy('many', ids)], [workload('w', ['many'])]);
    const marks = assignMarkBits(s, 0x00ff0000);
    expect(marks.endpoints[0]?.entries).toHaveLength(64);
    expect(marks.overflow).toHaveLength(6);
    expect(marks.mirrorOnlySets).toEqual(marks.overflow);
  });

  it('colours a host endpoint (entries without an interface, for the connect marker) and still lists it and its sets as mirror-only (its UDP)', () => {
    const s = state([policy('a', [1])], [workload('node', ['a'], true)]);
    const marks = assignMarkBits(s);
    expect(marks.mirrorOnlyEndpoints).toEqual(['node']);
    expect(marks.endpoints).toEqual([{ endpoint: 'node', entries: [{ setId: 1, bit: 0x00010000 }] }]);
    expect(marks.mirrorOnlySets).toEqual([1]);
    expect(markAssignmentJson(marks)['endpoints']).toEqual([{ endpoint: 'node', host: true, entries: [{ setId: 1, bit: '0x00010000' }] }]);
  });

  it('a host endpoint and a workload sharing sets get distinct marks per endpoint, one mark per set', () => {
    const s = state([policy('a', [1, 2]), policy('h', [2, 3])], [workload('w', ['a']), workload('node', ['h'], true)]);
    const marks = assignMarkBits(s, 0x00030000);
    // 2 is in both endpoints: its bit differs from 1's (w) and from 3's (node)
    expect(marks.bits.get(1)).not.toBe(marks.bits.get(2));
    expect(marks.bits.get(3)).not.toBe(marks.bits.get(2));
    expect(marks.overflow).toEqual([]);
    const node = marks.endpoints.find((e) => e.endpoint === 'node');
    expect(node?.interface).toBeUndefined();
    expect(node?.entries.map((e) => e.setId).sort()).toEqual([2, 3]);
  });

  it('a workload known only by addresses (no interface) stays mirror-only, without entries', () => {
    const { interface: _unused, ...byAddresses } = workload('w', ['a']);
    const s = state([policy('a', [1])], [byAddresses]);
    const marks = assignMarkBits(s);
    expect(marks.endpoints).toEqual([]);
    expect(marks.mirrorOnlyEndpoints).toEqual(['w']);
    expect(marks.mirrorOnlySets).toEqual([1]);
  });

  it('counts a set as mirror-only when a host endpoint references it, even with a bit for the workloads', () => {
    // set 2: bit for w, and the node's egress matches it only through the nft set; set 3 beyond the budget
    const s = state([policy('a', [1, 2, 3]), policy('h', [2])], [workload('w', ['a']), workload('node', ['h'], true)]);
    const marks = assignMarkBits(s, 0x00030000);
    expect([...marks.bits.keys()].sort()).toEqual([1, 2]);
    expect(marks.overflow).toEqual([3]);
    expect(marks.mirrorOnlySets).toEqual([2, 3]);
  });
});

describe('domain rules with a mark bit', () => {
  it('render as a mark rule and a set rule per family, with identical other matches and verdict', () => {
    const r = rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 443, last: 443 }], domainSetId: githubSet.id } });
    const bodies = renderRule(r, {
      policy: 'p',
      direction: 'egress',
      domainSets: new Map([[githubSet.id, githubSet]]),
      markMatches: new Map([[githubSet.id, { mask: 0x20000, value: 0x20000 }]]),
    });
    expect(bodies).toHaveLength(4);
    const markMatch = { match: { op: '==', left: { '&': [{ meta: { key: 'mark' } }, 0x20000] }, right: 0x20000 } };
    const setMatch = (f: 4 | 6) => ({
      match: { op: '==', left: { payload: { protocol: f === 4 ? 'ip' : 'ip6', field: 'daddr' } }, right: `@ds_1a2b_v${f}` },
    });
    expect(bodies[0]).toContainEqual(markMatch);
    expect(bodies[1]).toContainEqual(setMatch(4));
    expect(bodies[2]).toContainEqual(markMatch);
    expect(bodies[3]).toContainEqual(setMatch(6));
    expect(bodies[0]?.filter((x) => x !== bodies[0]?.[2])).toEqual(bodies[1]?.filter((x) => x !== bodies[1]?.[2]));
  });

  it('render a code as the code field equal to the set\'s code', () => {
    const r = rule(0, { action: 'allow', destination: { ...anyPeer, domainSetId: githubSet.id } });
    const bodies = renderRule(r, {
      policy: 'p',
      direction: 'egress',
      domainSets: new Map([[githubSet.id, githubSet]]),
      markMatches: new Map([[githubSet.id, { mask: 0x00f00000, value: 0x00500000 }]]),
    });
    expect(bodies).toHaveLength(4);
    expect(bodies[0]).toContainEqual({ match: { op: '==', left: { '&': [{ meta: { key: 'mark' } }, 0x00f00000] }, right: 0x00500000 } });
  });

  it('render only on the set without a bit', () => {
    const r = rule(0, { action: 'deny', destination: { ...anyPeer, domainSetId: githubSet.id } });
    const bodies = renderRule(r, { policy: 'p', direction: 'egress', domainSets: new Map([[githubSet.id, githubSet]]), markMatches: new Map() });
    expect(bodies).toHaveLength(2);
    expect(JSON.stringify(bodies)).not.toContain('mark');
  });

  it('parseAnswerMark: exactly one bit, outside markMask', () => {
    expect(parseAnswerMark(DEFAULT_ANSWER_MARK, DEFAULT_MARK_MASK)).toBe(0x04000000);
    expect(parseAnswerMark('0x80000000', DEFAULT_MARK_MASK)).toBe(0x80000000);
    expect(parseAnswerMark(1, DEFAULT_MARK_MASK)).toBe(1);
    for (const bad of ['0x03000000', '0x0', 0, -1, 0x100000000, 'x', '0x1000000000']) {
      expect(() => parseAnswerMark(bad, DEFAULT_MARK_MASK), String(bad)).toThrow(/exactly one bit/);
    }
    expect(() => parseAnswerMark('0x00800000', DEFAULT_MARK_MASK)).toThrow(/overlaps markMask 0xff0000/);
  });
});
