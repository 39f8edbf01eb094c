// Codec of dnsp_endpoint_sets values (interface → domain sets and mark bits): round trip,
// byte layout, and the refusals that keep two sets from sharing a bit or a code.
import { describe, expect, it } from 'vitest';
import {
  ENDPOINT_SETS_LAYOUTS,
  ENDPOINT_SETS_MAX,
  decodeEndpointKey,
  decodeEndpointSets,
  encodeEndpointKey,
  HOST_ENDPOINT_KEY,
  encodeEndpointSets,
  xtMemberPinName,
  xtMemberPinPath,
} from '../src/index.js';

describe('endpoint sets codec', () => {
  it('round-trips and lays out count, mask and (set id, bit) pairs little-endian', () => {
    const value = { markMask: 0x00ff0000, entries: [{ setId: 0xdeadbeef, bit: 0x00010000 }, { setId: 7, bit: 0x00800000 }] };
    const b = encodeEndpointSets(value);
    expect(b.length).toBe(ENDPOINT_SETS_LAYOUTS.dnsplane_endpoint_sets.size);
    expect(b.subarray(0, 24).toString('hex')).toBe('02000000' + '0000ff00' + 'efbeadde' + '00000100' + '07000000' + '00008000');
    expect(b.subarray(24).every((x) => x === 0)).toBe(true);
    expect(decodeEndpointSets(b)).toEqual(value);
    expect(decodeEndpointSets(encodeEndpointSets({ markMask: 0x80000000, entries: [{ setId: 1, bit: 0x80000000 }] }))).toEqual({
      markMask: 0x80000000,
      entries: [{ setId: 1, bit: 0x80000000 }],
    });
    const coded = { markMask: 0x00ff0000, entries: [{ setId: 1, bit: 0x00010000 }, { setId: 2, code: 0x00c00000 }, { setId: 3, code: 0x00a00000 }] };
    expect(decodeEndpointSets(encodeEndpointSets(coded))).toEqual(coded);
    expect(decodeEndpointKey(encodeEndpointKey(42))).toBe(42);
    // 0 is no interface: the node's own endpoint, which the connect marker reads
    expect(decodeEndpointKey(encodeEndpointKey(HOST_ENDPOINT_KEY))).toBe(0);
    expect(encodeEndpointKey(0x01020304).toString('hex')).toBe('04030201');
  });

  it('refuses what would mis-mark: bits outside the mask, several bits, shared bits or codes, a code over a bit, repeats, too many', () => {
    const mask = 0x00ff0000;
    expect(() => encodeEndpointSets({ markMask: 0, entries: [] })).toThrow(/markMask/);
    expect(() => encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, bit: 0x100 }] })).toThrow(/entries\[0\]\.bit .* outside markMask/);
    expect(() => encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, bit: 0x30000 }] })).toThrow(/exactly one bit/);
    expect(() => encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, bit: 0 }] })).toThrow(/exactly one bit/);
    expect(() =>
      encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, bit: 0x10000 }, { setId: 2, bit: 0x10000 }] }),
    ).toThrow(/entries\[1\]: bit 0x10000 is used by two sets/);
    expect(() =>
      encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, bit: 0x10000 }, { setId: 1, bit: 0x20000 }] }),
    ).toThrow(/set 1 is listed twice/);
    expect(() => encodeEndpointSets({ markMask: mask, entries: [{ setId: -1, bit: 0x10000 }] })).toThrow(/setId/);
    expect(() => encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, code: 0x10000 }] })).toThrow(/entries\[0\]\.code must have two or more bits/);
    expect(() => encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, code: 0x3000000 }] })).toThrow(/entries\[0\]\.code 0x3000000 is outside markMask/);
    expect(() =>
      encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, code: 0x30000 }, { setId: 2, code: 0x30000 }] }),
    ).toThrow(/entries\[1\]: code 0x30000 is used by two sets/);
    expect(() =>
      encodeEndpointSets({ markMask: mask, entries: [{ setId: 1, bit: 0x10000 }, { setId: 2, code: 0x30000 }] }),
    ).toThrow(/entries\[1\]: bit 0x10000 is both a set's own bit and part of a code/);
    const many = Array.from({ length: ENDPOINT_SETS_MAX + 1 }, (_, i) => ({ setId: i, bit: 1 }));
    expect(() => encodeEndpointSets({ markMask: 0xffffffff, entries: many })).toThrow(/at most 64/);
    expect(() => encodeEndpointKey(-1)).toThrow(/ifindex/);
    expect(() => encodeEndpointKey(2 ** 32)).toThrow(/ifindex/);
  });
});

describe('xt_member pin names', () => {
  it('are xt_member_ and 8 lower-case hex digits', () => {
    expect(xtMemberPinName(0x1234abcd)).toBe('xt_member_1234abcd');
    expect(xtMemberPinName(5)).toBe('xt_member_00000005');
    expect(xtMemberPinPath('/sys/fs/bpf/dnsplane', 0xffffffff)).toBe('/sys/fs/bpf/dnsplane/xt_member_ffffffff');
    expect(() => xtMemberPinName(2 ** 32)).toThrow(RangeError);
    expect(() => xtMemberPinName(1.5)).toThrow(RangeError);
  });
});
