// Which packet-mark bit carries which domain set's kernel membership to the nft rules.
// The tc membership marker (bpf-parser) sets, on a workload's egress path, one bit per domain
// set that endpoint's egress policies reference and that holds the packet's destination. A
// policy chain is shared by every endpoint it selects, so a set must have ONE bit everywhere;
// and two sets one endpoint references must have different bits, or the rule of one would
// match members of the other. That is graph colouring: sets are vertices, "referenced by the
// same endpoint" is an edge, the bits of the mask are the colours. Greedy, deterministic
// (most-constrained set first, then by id; lowest free bit); a set for which no bit is free
// gets none and relies on the nft set that the mirror fills.
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

export interface MarkedSet {
  readonly setId: number;
  /** A single-bit value inside the mask. */
  readonly bit: number;
}

export interface EndpointMarks {
  readonly endpoint: string;
  /** Host-side interface: the marker runs on its tc ingress. */
  readonly interface: string;
  /** The sets this endpoint's egress policies reference that have a bit, by set id. */
  readonly entries: readonly MarkedSet[];
}

export interface MarkAssignment {
  readonly markMask: number;
  /** Domain set id → its bit (the same for every endpoint). */
  readonly bits: ReadonlyMap<number, number>;
  /** Sets referenced by workload egress policies that got no bit: the mirror alone serves them. */
  readonly overflow: readonly number[];
  /** Workload endpoints (with an interface) that reference domain sets, by name. */
  readonly endpoints: readonly EndpointMarks[];
  /** Host endpoints whose egress references domain sets (tc runs after netfilter output there). */
  readonly mirrorOnlyEndpoints: readonly string[];
  /**
   * Sets some endpoint's rules can only match through the nft set, ascending: the overflow and
   * every set a mirror-only endpoint references (with a bit or not). The parser wakes the
   * mirror for their learned events; the others' nft sets are a copy the mirror may write late.
   */
  readonly mirrorOnlySets: readonly number[];
}

function domainSetsOf(rules: readonly CompiledRule[] | undefined): number[] {
  return (rules ?? []).flatMap((r) => (r.destination.domainSetId === undefined ? [] : [r.destination.domainSetId]));
}

const byName = <T extends { readonly name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Colours the domain sets of workload egress policies onto the bits of `markMask`. Pure. */
export function assignMarkBits(state: DesiredState, markMask: number = DEFAULT_MARK_MASK): MarkAssignment {
  const palette = maskBits(parseMarkMask(markMask));
  const policies = new Map(state.policies.map((p) => [p.name, p]));
  const setsOfEndpoint = (names: readonly string[]): number[] =>
    [...new Set(names.flatMap((n) => domainSetsOf(policies.get(n)?.egress)))].sort((a, b) => a - b);

  const workloads: Array<{ endpoint: string; interface: string; sets: number[] }> = [];
  const mirrorOnlyEndpoints: string[] = [];
  const mirrorOnlySets = new Set<number>();
  for (const endpoint of [...state.endpoints].sort(byName)) {
    const sets = setsOfEndpoint(endpoint.egressPolicies);
    if (sets.length === 0) continue;
    if (endpoint.host || endpoint.interface === undefined) {
      mirrorOnlyEndpoints.push(endpoint.name);
      for (const set of sets) mirrorOnlySets.add(set);
    } else {
      workloads.push({ endpoint: endpoint.name, interface: endpoint.interface, sets });
    }
  }

  // Conflict graph, kept implicit: a set's neighbours are the other sets of the endpoints that
  // reference it. With one endpoint referencing 1,000 sets the explicit graph has a million
  // edges (~0.4 s per install); instead each endpoint keeps the bits its sets already took.
  const endpointsOf = new Map<number, number[]>(); // set → indices into workloads
  workloads.forEach(({ sets }, index) => {
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
      for (const index of indices) for (const other of workloads[index]?.sets ?? []) union.add(other);
      value = union.size - 1;
      degreeByEndpoints.set(key, value);
    }
    degree.set(set, value);
  }
  const order = [...endpointsOf.keys()].sort((a, b) => (degree.get(b) ?? 0) - (degree.get(a) ?? 0) || a - b);
  const usedBits = workloads.map(() => new Set<number>());
  const bits = new Map<number, number>();
  const overflow: number[] = [];
  for (const set of order) {
    const indices = endpointsOf.get(set) ?? [];
    const bit = palette.find((b) => !indices.some((index) => usedBits[index]?.has(b)));
    if (bit === undefined) {
      overflow.push(set);
      continue;
    }
    bits.set(set, bit);
    for (const index of indices) usedBits[index]?.add(bit);
  }

  const endpoints: EndpointMarks[] = workloads.map((w) => ({
    endpoint: w.endpoint,
    interface: w.interface,
    entries: w.sets
      .filter((s) => bits.has(s))
      .map((setId) => ({ setId, bit: bits.get(setId) ?? 0 })),
  }));
  for (const set of overflow) mirrorOnlySets.add(set);
  return {
    markMask: parseMarkMask(markMask),
    bits,
    overflow: overflow.sort((a, b) => a - b),
    endpoints,
    mirrorOnlyEndpoints,
    mirrorOnlySets: [...mirrorOnlySets].sort((a, b) => a - b),
  };
}

/** The assignment as plain JSON (what `render()` prints and the marker is programmed with). */
export function markAssignmentJson(assignment: MarkAssignment): Record<string, unknown> {
  const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
  return {
    markMask: hex(assignment.markMask),
    bits: Object.fromEntries([...assignment.bits].sort((a, b) => a[0] - b[0]).map(([id, bit]) => [String(id), hex(bit)])),
    overflow: assignment.overflow,
    endpoints: assignment.endpoints.map((e) => ({
      endpoint: e.endpoint,
      interface: e.interface,
      entries: e.entries.map((m) => ({ setId: m.setId, bit: hex(m.bit) })),
    })),
    mirrorOnlyEndpoints: assignment.mirrorOnlyEndpoints,
    mirrorOnlySets: assignment.mirrorOnlySets,
  };
}
