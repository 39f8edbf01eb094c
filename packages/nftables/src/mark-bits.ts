// Which packet-mark bits carry which domain set's kernel membership to the nft rules.
// The tc membership marker (bpf-parser) runs on a workload's egress path and writes, for the
// domain sets that endpoint's egress policies reference and that hold the packet's
// destination, each set's mark: a bit of its own, or a code. For a host endpoint (the node
// itself) the connect marker writes the same marks into the socket at connect(). A policy
// chain is shared by every endpoint it selects, so a set must have ONE mark everywhere; and two sets one endpoint
// references must have different marks, or the rule of one would match members of the other.
// That is graph colouring: sets are vertices, "referenced by the same endpoint" is an edge.
// Greedy, deterministic (most-constrained set first, then by id; lowest free colour).
//
// Colours: first the single bits of the mask — bits combine, so an address in several of an
// endpoint's sets passes every one of their rules. When an endpoint references more sets than
// there are bits, the top bits of the mask become a code field instead: every value of the
// field with two or more bits set is one set's code (a 4-bit field: 11 codes, 6 bits: 57,
// 8 bits: 247), the bits below it stay single bits. Codes do not combine: the marker writes
// the code of the first of the endpoint's code sets (in rule order) that holds the
// destination, so an address in two code sets of one endpoint passes the later set's rules
// only once the mirror wrote it to that nft set. The field width is the one that leaves the
// fewest sets unmarked (then the narrowest). A set for which no colour is free, or that would
// take an endpoint past the marker's 64 entries, gets none and relies on the nft set that the
// mirror fills.
import type { EndpointSetEntry } from '@dnsplane/bpf-parser';
import type { CompiledRule, DesiredState } from '@dnsplane/core';

/** The default of `nftables.markMask`: eight bits, 0x00ff0000. */
export const DEFAULT_MARK_MASK = 0x00ff0000;

/** A mask given as a number or as config text ("0x00ff0000"); RangeError when it is not one. */
export function parseMarkMask(mask: number | string): number {
  const value = typeof mask === 'number' ? mask : /^0x[0-9a-fA-F]{1,8}$/.test(mask) ? Number.parseInt(mask, 16) : Number.NaN;
  if (!Number.isInteger(value) || value <= 0 || value > 0xffffffff) {
    throw new RangeError(`nftables markMask must be a non-zero 32-bit mask such as 0x00ff0000, got ${String(mask)}`);
  }
  return value >>> 0;
}

/**
 * The default of `nftables.answerMark`: one bit, outside DEFAULT_MARK_MASK and outside the
 * iptables dataplane's bits (0x01000000 allow, 0x02000000 match): both are in force during a migration.
 */
export const DEFAULT_ANSWER_MARK = 0x04000000;

/**
 * The verified-answer mark (number or config text "0x04000000"): exactly one bit, outside
 * `markMask` (the membership marker clears and sets those bits); RangeError otherwise.
 */
export function parseAnswerMark(mark: number | string, markMask: number): number {
  const value = typeof mark === 'number' ? mark : /^0x[0-9a-fA-F]{1,8}$/.test(mark) ? Number.parseInt(mark, 16) : Number.NaN;
  if (!Number.isInteger(value) || value <= 0 || value > 0xffffffff || (value & (value - 1)) !== 0) {
    throw new RangeError(`nftables answerMark must be exactly one bit of the 32-bit mark, such as 0x04000000, got ${String(mark)}`);
  }
  if (((value & markMask) >>> 0) !== 0) {
    throw new RangeError(
      `nftables answerMark 0x${value.toString(16)} overlaps markMask 0x${(markMask >>> 0).toString(16)}: the membership marker owns those bits`,
    );
  }
  return value >>> 0;
}

/** The single-bit values of a mask, lowest first. */
export function maskBits(mask: number): number[] {
  const bits: number[] = [];
  for (let i = 0; i < 32; i++) {
    const bit = (2 ** i) >>> 0;
    if (((mask >>> 0) & bit) >>> 0 === bit) bits.push(bit);
  }
  return bits;
}

/** One set's entry at an endpoint: its own bit, or its code — the marker's entry as it is programmed. */
export type MarkedSet = EndpointSetEntry;

export interface EndpointMarks {
  readonly endpoint: string;
  /**
   * Host-side interface: the marker runs on its tc ingress. Absent for the host endpoint: the
   * connect marker marks the node's TCP connects (bpf-parser's HOST_ENDPOINT_KEY entry).
   */
  readonly interface?: string;
  /** The sets this endpoint's egress policies reference that have a mark: bits by set id, then codes in rule order. */
  readonly entries: readonly MarkedSet[];
}

export interface MarkAssignment {
  readonly markMask: number;
  /** Domain set id → its bit (the same for every endpoint). */
  readonly bits: ReadonlyMap<number, number>;
  /** The bits of the mask that form the code field (0: no codes). */
  readonly codeMask: number;
  /** Domain set id → its code, a value of codeMask with two or more bits (the same for every endpoint). */
  readonly codes: ReadonlyMap<number, number>;
  /** Sets referenced by coloured endpoints' egress policies that got no mark: the mirror alone serves them. */
  readonly overflow: readonly number[];
  /** Endpoints that reference domain sets in egress, by name: workloads (with an interface) and the host endpoint. */
  readonly endpoints: readonly EndpointMarks[];
  /**
   * Endpoints whose egress references domain sets that rely on the nft sets for some traffic:
   * a host endpoint for all but its TCP connects (which the connect marker marks; tc runs after
   * netfilter's output hook there, and a UDP socket's connect does not fix its destination),
   * and a workload without an interface for everything.
   */
  readonly mirrorOnlyEndpoints: readonly string[];
  /**
   * Sets some endpoint's rules can match only through the nft set for some traffic, ascending:
   * the overflow and every set a mirror-only endpoint references. The parser wakes the
   * mirror for their learned events; the others' nft sets are a copy the mirror may write late.
   */
  readonly mirrorOnlySets: readonly number[];
}

/** The marker's entries per interface (bpf-parser's ENDPOINT_SETS_MAX; a unit test keeps them equal). */
export const MARKED_SETS_PER_ENDPOINT = 64;

/** What an nft rule matches for a marked set: `meta mark & mask == value`; undefined: not marked. */
export function markMatchOf(assignment: MarkAssignment, setId: number): { readonly mask: number; readonly value: number } | undefined {
  const bit = assignment.bits.get(setId);
  if (bit !== undefined) return { mask: bit, value: bit };
  const code = assignment.codes.get(setId);
  return code === undefined ? undefined : { mask: assignment.codeMask, value: code };
}

/**
 * Codes a colouring can use at most: far more than one endpoint's 64 entries need, and it
 * keeps a wide field (a 32-bit mask has 2^32 values) from being enumerated.
 */
export const MAX_CODES = 1024;

/** The values of `field` with two or more of its bits set, ascending, the first `limit`: the codes it offers. */
export function fieldCodes(field: number, limit = MAX_CODES): number[] {
  const bits = maskBits(field);
  const codes: number[] = [];
  // bits ascend, so subsets in counting order give ascending values
  for (let subset = 3; subset < 2 ** bits.length && codes.length < limit; subset++) {
    let value = 0;
    let count = 0;
    for (let i = 0; i < bits.length; i++) {
      if (Math.floor(subset / 2 ** i) % 2 === 1) {
        value += bits[i]!;
        count++;
      }
    }
    if (count >= 2) codes.push(value >>> 0);
  }
  return codes;
}

function domainSetsOf(rules: readonly CompiledRule[] | undefined): number[] {
  return (rules ?? []).flatMap((r) => (r.destination.domainSetId === undefined ? [] : [r.destination.domainSetId]));
}

const byName = <T extends { readonly name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

interface Colouring {
  readonly bits: Map<number, number>;
  readonly codes: Map<number, number>;
  readonly overflow: number[];
}

/** One greedy pass: bits of `bitPalette` first, then `codes`, per set in `order`. */
function colour(order: readonly number[], endpointsOf: ReadonlyMap<number, number[]>, endpoints: number, bitPalette: readonly number[], codes: readonly number[]): Colouring {
  const usedBits = Array.from({ length: endpoints }, () => new Set<number>());
  const usedCodes = Array.from({ length: endpoints }, () => new Set<number>());
  const entries = new Array<number>(endpoints).fill(0);
  const result: Colouring = { bits: new Map(), codes: new Map(), overflow: [] };
  for (const set of order) {
    const indices = endpointsOf.get(set) ?? [];
    if (indices.some((index) => (entries[index] ?? 0) >= MARKED_SETS_PER_ENDPOINT)) {
      result.overflow.push(set);
      continue;
    }
    const bit = bitPalette.find((b) => !indices.some((index) => usedBits[index]?.has(b)));
    const code = bit === undefined ? codes.find((c) => !indices.some((index) => usedCodes[index]?.has(c))) : undefined;
    if (bit !== undefined) {
      result.bits.set(set, bit);
      for (const index of indices) usedBits[index]?.add(bit);
    } else if (code !== undefined) {
      result.codes.set(set, code);
      for (const index of indices) usedCodes[index]?.add(code);
    } else {
      result.overflow.push(set);
      continue;
    }
    for (const index of indices) entries[index] = (entries[index] ?? 0) + 1;
  }
  return result;
}

/** Colours the domain sets of workload egress policies onto the bits (and codes) of `markMask`. Pure. */
export function assignMarkBits(state: DesiredState, markMask: number = DEFAULT_MARK_MASK): MarkAssignment {
  const palette = maskBits(parseMarkMask(markMask));
  const policies = new Map(state.policies.map((p) => [p.name, p]));
  /** The endpoint's sets in rule order (policies as the endpoint lists them, rules in order), each once. */
  const setsInRuleOrder = (names: readonly string[]): number[] => [...new Set(names.flatMap((n) => domainSetsOf(policies.get(n)?.egress)))];

  // Every endpoint with domain sets in egress is coloured: workloads (the tc marker on their
  // interface) and the host endpoint (the connect marker); an endpoint with neither is left out.
  const coloured: Array<{ endpoint: string; interface?: string; sets: number[]; ruleOrder: number[] }> = [];
  const mirrorOnlyEndpoints: string[] = [];
  const mirrorOnlySets = new Set<number>();
  for (const endpoint of [...state.endpoints].sort(byName)) {
    const ruleOrder = setsInRuleOrder(endpoint.egressPolicies);
    if (ruleOrder.length === 0) continue;
    const sets = [...ruleOrder].sort((a, b) => a - b);
    if (endpoint.host) {
      mirrorOnlyEndpoints.push(endpoint.name);
      for (const set of sets) mirrorOnlySets.add(set);
      coloured.push({ endpoint: endpoint.name, sets, ruleOrder });
    } else if (endpoint.interface !== undefined) {
      coloured.push({ endpoint: endpoint.name, interface: endpoint.interface, sets, ruleOrder });
    } else {
      // a workload known only by its addresses: no interface to mark on
      mirrorOnlyEndpoints.push(endpoint.name);
      for (const set of sets) mirrorOnlySets.add(set);
    }
  }

  // Conflict graph, kept implicit: a set's neighbours are the other sets of the endpoints that
  // reference it. With one endpoint referencing 1,000 sets the explicit graph has a million
  // edges (~0.4 s per install); instead each endpoint keeps the colours its sets already took.
  const endpointsOf = new Map<number, number[]>(); // set → indices into coloured
  coloured.forEach(({ sets }, index) => {
    for (const set of sets) {
      const list = endpointsOf.get(set) ?? [];
      list.push(index);
      endpointsOf.set(set, list);
    }
  });
  // Degree = |union of its endpoints' sets| − 1, the same for every set with the same endpoints.
  const degreeByEndpoints = new Map<string, number>();
  const degree = new Map<number, number>();
  for (const [set, indices] of endpointsOf) {
    const key = indices.join(',');
    let value = degreeByEndpoints.get(key);
    if (value === undefined) {
      const union = new Set<number>();
      for (const index of indices) for (const other of coloured[index]?.sets ?? []) union.add(other);
      value = union.size - 1;
      degreeByEndpoints.set(key, value);
    }
    degree.set(set, value);
  }
  const order = [...endpointsOf.keys()].sort((a, b) => (degree.get(b) ?? 0) - (degree.get(a) ?? 0) || a - b);

  // Single bits only; when that leaves sets unmarked, code fields of 2.. bits at the top of the
  // mask, keeping the one that marks the most sets (the narrowest of equals).
  let codeMask = 0;
  let best = colour(order, endpointsOf, coloured.length, palette, []);
  for (let width = 2; width <= palette.length && best.overflow.length > 0; width++) {
    const field = palette.slice(palette.length - width).reduce((m, b) => (m | b) >>> 0, 0);
    const attempt = colour(order, endpointsOf, coloured.length, palette.slice(0, palette.length - width), fieldCodes(field));
    if (attempt.overflow.length < best.overflow.length) {
      best = attempt;
      codeMask = field;
    }
  }
  const { bits, codes, overflow } = best;

  const endpoints: EndpointMarks[] = coloured.map((w) => ({
    endpoint: w.endpoint,
    ...(w.interface === undefined ? {} : { interface: w.interface }),
    entries: [
      ...w.sets.flatMap((setId): MarkedSet[] => {
        const bit = bits.get(setId);
        return bit === undefined ? [] : [{ setId, bit }];
      }),
      ...w.ruleOrder.flatMap((setId): MarkedSet[] => {
        const code = codes.get(setId);
        return code === undefined ? [] : [{ setId, code }];
      }),
    ],
  }));
  for (const set of overflow) mirrorOnlySets.add(set);
  return {
    markMask: parseMarkMask(markMask),
    bits,
    codeMask,
    codes,
    overflow: overflow.sort((a, b) => a - b),
    endpoints,
    mirrorOnlyEndpoints,
    mirrorOnlySets: [...mirrorOnlySets].sort((a, b) => a - b),
  };
}

/** The assignment as plain JSON (what `render()` prints and the marker is programmed with). */
export function markAssignmentJson(assignment: MarkAssignment): Record<string, unknown> {
  const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
  const byId = (m: ReadonlyMap<number, number>): Record<string, string> =>
    Object.fromEntries([...m].sort((a, b) => a[0] - b[0]).map(([id, value]) => [String(id), hex(value)]));
  return {
    markMask: hex(assignment.markMask),
    bits: byId(assignment.bits),
    ...(assignment.codeMask === 0 ? {} : { codeMask: hex(assignment.codeMask), codes: byId(assignment.codes) }),
    overflow: assignment.overflow,
    endpoints: assignment.endpoints.map((e) => ({
      endpoint: e.endpoint,
      ...(e.interface === undefined ? { host: true } : { interface: e.interface }),
      entries: e.entries.map((m) => ('bit' in m ? { setId: m.setId, bit: hex(m.bit) } : { setId: m.setId, code: hex(m.code) })),
    })),
    mirrorOnlyEndpoints: assignment.mirrorOnlyEndpoints,
    mirrorOnlySets: assignment.mirrorOnlySets,
  };
}
