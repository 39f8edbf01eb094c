// The TypeScript side of `struct dnsplane_endpoint_sets` (bpf/dnsplane_maps.h): the value of
// dnsp_endpoint_sets, the per-interface list of (domain set, mark bit or code) the tc
// membership mark (bpf/membership_mark.bpf.c) checks. ENDPOINT_SETS_LAYOUTS is compared with the BTF of
// membership_mark.bpf.o in test/maps-btf.test.ts.
import type { StructLayout } from './maps.js';

/** Name of the pinned map (<pinRoot>/dnsp_endpoint_sets). */
export const ENDPOINT_SETS_MAP = 'dnsp_endpoint_sets';
/** Entries (domain sets) one interface can have marked (DNSPLANE_ENDPOINT_SETS; 32 before codes). */
export const ENDPOINT_SETS_MAX = 64;
/**
 * The key of the node's own endpoint (DNSPLANE_HOST_ENDPOINT_KEY; no interface has index 0):
 * the connect marker checks its entry for the node's TCP connects.
 */
export const HOST_ENDPOINT_KEY = 0;
/** Interfaces the map holds. */
export const ENDPOINT_SETS_CAPACITY = 4096;

export const ENDPOINT_SETS_LAYOUTS = {
  dnsplane_endpoint_set: {
    size: 8,
    fields: { set_id: { offset: 0, size: 4 }, mark: { offset: 4, size: 4 } },
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

/**
 * One domain set an interface's packets are checked against, and what its membership writes
 * into the mark: a bit of its own (ORed with the other sets' bits), or a code — a value of
 * several bits, written only when no earlier code entry matched (codes never combine).
 */
export type EndpointSetEntry =
  | {
      readonly setId: number;
      /** Exactly one bit, inside the mask. */
      readonly bit: number;
    }
  | {
      readonly setId: number;
      /** Two or more bits, inside the mask, clear of every entry's single bit. */
      readonly code: number;
    };

export interface EndpointSets {
  /** The mark bits the program owns on this interface: cleared, then set per matching set. */
  readonly markMask: number;
  /** In order: of the code entries, the first whose set holds the destination wins. */
  readonly entries: readonly EndpointSetEntry[];
}

/** The value an entry writes into the mark (its bit or its code). */
export function entryMark(entry: EndpointSetEntry): number {
  return 'bit' in entry ? entry.bit : entry.code;
}

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function isSingleBit(value: number): boolean {
  return isU32(value) && value !== 0 && (value & (value - 1)) === 0;
}

/**
 * Checks an interface's entries; RangeError naming the entry and the reason: at most 64,
 * a non-zero 32-bit mask, each bit a single bit inside the mask and each code two or more
 * bits inside it, no set, bit or code twice (two sets sharing one would let one set's members
 * pass the other's rules), and no code touching a bit entry's bit (ORing that bit in would
 * turn a code into another).
 */
export function validateEndpointSets(value: EndpointSets): void {
  const { markMask, entries } = value;
  if (!isU32(markMask) || markMask === 0) throw new RangeError(`markMask must be a non-zero 32-bit mask, not ${String(markMask)}`);
  if (entries.length > ENDPOINT_SETS_MAX) {
    throw new RangeError(`an interface can have at most ${ENDPOINT_SETS_MAX} domain sets marked, not ${entries.length}`);
  }
  const sets = new Set<number>();
  const marks = new Set<number>();
  let singleBits = 0;
  let codeBits = 0;
  entries.forEach((entry, i) => {
    const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`;
    if (!isU32(entry.setId)) throw new RangeError(`entries[${i}].setId must be a 32-bit unsigned integer, not ${String(entry.setId)}`);
    const mark = entryMark(entry);
    if ('bit' in entry) {
      if (!isSingleBit(entry.bit)) throw new RangeError(`entries[${i}].bit must have exactly one bit set, not ${hex(entry.bit)}`);
      singleBits = (singleBits | entry.bit) >>> 0;
    } else {
      if (!isU32(entry.code) || isSingleBit(entry.code) || entry.code === 0) {
        throw new RangeError(`entries[${i}].code must have two or more bits set, not ${hex(entry.code)}`);
      }
      codeBits = (codeBits | entry.code) >>> 0;
    }
    if ((mark & markMask) >>> 0 !== mark) {
      throw new RangeError(`entries[${i}].${'bit' in entry ? 'bit' : 'code'} ${hex(mark)} is outside markMask ${hex(markMask)}`);
    }
    if (sets.has(entry.setId)) throw new RangeError(`entries[${i}]: set ${entry.setId} is listed twice`);
    if (marks.has(mark)) throw new RangeError(`entries[${i}]: ${'bit' in entry ? 'bit' : 'code'} ${hex(mark)} is used by two sets`);
    if ((singleBits & codeBits) >>> 0 !== 0) {
      throw new RangeError(`entries[${i}]: bit ${hex((singleBits & codeBits) >>> 0)} is both a set's own bit and part of a code`);
    }
    sets.add(entry.setId);
    marks.add(mark);
  });
}

export function encodeEndpointKey(ifindex: number): Buffer {
  if (!Number.isInteger(ifindex) || ifindex < 0 || ifindex > 0xffffffff) {
    throw new RangeError(`ifindex must be a 32-bit integer (${HOST_ENDPOINT_KEY}: the node's own endpoint), not ${String(ifindex)}`);
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
    b.writeUInt32LE(entryMark(entry) >>> 0, at + e.fields.mark.offset);
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
    const setId = b.readUInt32LE(at + e.fields.set_id.offset);
    const mark = b.readUInt32LE(at + e.fields.mark.offset);
    entries.push(isSingleBit(mark) ? { setId, bit: mark } : { setId, code: mark });
  }
  return { markMask: b.readUInt32LE(f.mark_mask.offset), entries };
}
