// The TypeScript side of `struct dnsplane_endpoint_sets` (bpf/dnsplane_maps.h): the value of
// dnsp_endpoint_sets, the per-interface list of (domain set, mark bit) the tc membership
// mark (bpf/membership_mark.bpf.c) checks. ENDPOINT_SETS_LAYOUTS is compared with the BTF of
// membership_mark.bpf.o in test/maps-btf.test.ts.
import type { StructLayout } from './maps.js';

/** Name of the pinned map (<pinRoot>/dnsp_endpoint_sets). */
export const ENDPOINT_SETS_MAP = 'dnsp_endpoint_sets';
/** Entries (domain sets) one interface can have marked. */
export const ENDPOINT_SETS_MAX = 32;
/** Interfaces the map holds. */
export const ENDPOINT_SETS_CAPACITY = 4096;

export const ENDPOINT_SETS_LAYOUTS = {
  dnsplane_endpoint_set: {
    size: 8,
    fields: { set_id: { offset: 0, size: 4 }, bit: { offset: 4, size: 4 } },
  },
  dnsplane_endpoint_sets: {
    size: 8 + 8 * ENDPOINT_SETS_MAX,
    fields: {
      count: { offset: 0, size: 4 },
      mark_mask: { offset: 4, size: 4 },
      entries: { offset: 8, size: 8 * ENDPOINT_SETS_MAX },
    },
  },
} as const satisfies Record<string, StructLayout>;

/** One domain set an interface's packets are checked against, and the mark bit it sets. */
export interface EndpointSetEntry {
  readonly setId: number;
  /** The mark value to OR in when the destination is a member: exactly one bit, inside the mask. */
  readonly bit: number;
}

export interface EndpointSets {
  /** The mark bits the program owns on this interface: cleared, then set per matching set. */
  readonly markMask: number;
  readonly entries: readonly EndpointSetEntry[];
}

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function isSingleBit(value: number): boolean {
  return isU32(value) && value !== 0 && (value & (value - 1)) === 0;
}

/**
 * Checks an interface's entries; RangeError naming the entry and the reason: at most 32,
 * a non-zero 32-bit mask, each bit a single bit inside the mask, no set or bit twice (two
 * sets sharing a bit would let one set's members pass the other's rules).
 */
export function validateEndpointSets(value: EndpointSets): void {
  const { markMask, entries } = value;
  if (!isU32(markMask) || markMask === 0) throw new RangeError(`markMask must be a non-zero 32-bit mask, not ${String(markMask)}`);
  if (entries.length > ENDPOINT_SETS_MAX) {
    throw new RangeError(`an interface can have at most ${ENDPOINT_SETS_MAX} domain sets marked, not ${entries.length}`);
  }
  const sets = new Set<number>();
  const bits = new Set<number>();
  entries.forEach((entry, i) => {
    if (!isU32(entry.setId)) throw new RangeError(`entries[${i}].setId must be a 32-bit unsigned integer, not ${String(entry.setId)}`);
    if (!isSingleBit(entry.bit)) throw new RangeError(`entries[${i}].bit must have exactly one bit set, not 0x${entry.bit.toString(16)}`);
    if ((entry.bit & markMask) >>> 0 !== entry.bit) {
      throw new RangeError(`entries[${i}].bit 0x${entry.bit.toString(16)} is outside markMask 0x${markMask.toString(16)}`);
    }
    if (sets.has(entry.setId)) throw new RangeError(`entries[${i}]: set ${entry.setId} is listed twice`);
    if (bits.has(entry.bit)) throw new RangeError(`entries[${i}]: bit 0x${entry.bit.toString(16)} is used by two sets`);
    sets.add(entry.setId);
    bits.add(entry.bit);
  });
}

export function encodeEndpointKey(ifindex: number): Buffer {
  if (!Number.isInteger(ifindex) || ifindex < 1 || ifindex > 0xffffffff) {
    throw new RangeError(`ifindex must be a positive 32-bit integer, not ${String(ifindex)}`);
  }
  const b = Buffer.alloc(4);
  b.writeUInt32LE(ifindex);
  return b;
}

export function decodeEndpointKey(b: Buffer): number {
  return b.readUInt32LE(0);
}

/** Encodes (after validateEndpointSets) the map value. */
export function encodeEndpointSets(value: EndpointSets): Buffer {
  validateEndpointSets(value);
  const L = ENDPOINT_SETS_LAYOUTS;
  const f = L.dnsplane_endpoint_sets.fields;
  const e = L.dnsplane_endpoint_set;
  const b = Buffer.alloc(L.dnsplane_endpoint_sets.size);
  b.writeUInt32LE(value.entries.length, f.count.offset);
  b.writeUInt32LE(value.markMask >>> 0, f.mark_mask.offset);
  value.entries.forEach((entry, i) => {
    const at = f.entries.offset + i * e.size;
    b.writeUInt32LE(entry.setId, at + e.fields.set_id.offset);
    b.writeUInt32LE(entry.bit >>> 0, at + e.fields.bit.offset);
  });
  return b;
}

export function decodeEndpointSets(b: Buffer): EndpointSets {
  const L = ENDPOINT_SETS_LAYOUTS;
  const f = L.dnsplane_endpoint_sets.fields;
  const e = L.dnsplane_endpoint_set;
  const count = Math.min(b.readUInt32LE(f.count.offset), ENDPOINT_SETS_MAX);
  const entries: EndpointSetEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = f.entries.offset + i * e.size;
    entries.push({ setId: b.readUInt32LE(at + e.fields.set_id.offset), bit: b.readUInt32LE(at + e.fields.bit.offset) });
  }
  return { markMask: b.readUInt32LE(f.mark_mask.offset), entries };
}
