// Round trips of the map codecs in src/maps.ts (their byte layout is checked against the
// object's BTF in maps-btf.test.ts).
import { describe, expect, it } from 'vitest';
import {
  STRUCT_LAYOUTS,
  decodeConfig,
  decodeEvents,
  eventNameBytes,
  decodeMemberKey,
  decodeQueryKey,
  decodeTableInfo,
  encodeConfig,
  encodeMemberKey,
  encodeQueryKey,
  encodeTableInfo,
} from '../src/maps.js';

describe('map codecs', () => {
  it('config with trusted servers', () => {
    const config = {
      minTTL: 30,
      extraTTL: 10,
      maxAddressesPerName: 256,
      trustedServers: [
        { family: 4 as const, address: '198.18.0.53', port: 53 },
        { family: 6 as const, address: 'fd00::53', port: 5353 },
      ],
    };
    const b = encodeConfig(config);
    expect(b.length).toBe(STRUCT_LAYOUTS.dnsplane_config.size);
    expect(decodeConfig(b)).toEqual(config);
    expect(() => encodeConfig({ ...config, trustedServers: Array(17).fill(config.trustedServers[0]) })).toThrow(/at most 16/);
    expect(() => encodeConfig({ ...config, minTTL: -1 })).toThrow(/minTTL/);
  });

  it('table info, query keys, member keys', () => {
    expect(decodeTableInfo(encodeTableInfo({ minSuffixLabels: 1, maxSuffixLabels: 4, entries: 9 }))).toEqual({ minSuffixLabels: 1, maxSuffixLabels: 4, entries: 9, generation: 0, wakeSets: false, events: true });
    expect(decodeTableInfo(encodeTableInfo({ minSuffixLabels: 1, maxSuffixLabels: 4, entries: 9, generation: 1 }))).toEqual({ minSuffixLabels: 1, maxSuffixLabels: 4, entries: 9, generation: 1, wakeSets: false, events: true });
    expect(encodeTableInfo({ minSuffixLabels: 1, maxSuffixLabels: 4, entries: 9, generation: 1 }).toString('hex')).toBe('0104010009000000');
    // the wake flag is byte 3 (the parser reads the word as min, max, generation, flags, entries)
    expect(encodeTableInfo({ minSuffixLabels: 1, maxSuffixLabels: 4, entries: 9, generation: 1, wakeSets: true }).toString('hex')).toBe('0104010109000000');
    expect(decodeTableInfo(Buffer.from('0104010109000000', 'hex')).wakeSets).toBe(true);
    // no reader of learned events: flag bit 1 (DNSPLANE_TABLE_NO_EVENTS)
    expect(encodeTableInfo({ minSuffixLabels: 1, maxSuffixLabels: 4, entries: 9, generation: 1, events: false }).toString('hex')).toBe('0104010209000000');
    expect(decodeTableInfo(Buffer.from('0104010309000000', 'hex'))).toMatchObject({ wakeSets: true, events: false });
    const q = { qnameHash: 0x1234_5678_9abc_def0n, family: 6 as const, address: 'fd00::1:10', port: 40000, txid: 0xbeef };
    expect(decodeQueryKey(encodeQueryKey(q))).toEqual(q);
    const m4 = { setId: 7, family: 4 as const, address: '198.18.5.5' };
    const m6 = { setId: 0xfffffff0, family: 6 as const, address: 'fd00::5' };
    expect(encodeMemberKey(m4).length).toBe(STRUCT_LAYOUTS.dnsplane_member4_key.size);
    expect(decodeMemberKey(4, encodeMemberKey(m4))).toEqual(m4);
    expect(decodeMemberKey(6, encodeMemberKey(m6))).toEqual(m6);
    expect(() => encodeMemberKey({ setId: 1, family: 4, address: 'fd00::1' })).toThrow(/not an IPv4 address/);
  });

  it('a ring-buffer record (header, name padded to 8, entries) decodes to one event per entry', () => {
    const h = STRUCT_LAYOUTS.dnsplane_event_header;
    const e = STRUCT_LAYOUTS.dnsplane_event_entry;
    // 'example.com' is 11 bytes: padded to 16, the entries start at 16 + 16
    const first = h.size + 16;
    expect(eventNameBytes(11)).toBe(16);
    expect(eventNameBytes(0)).toBe(0);
    expect(eventNameBytes(16)).toBe(16);
    expect(eventNameBytes(255)).toBe(256);
    const b = Buffer.alloc(first + 2 * e.size);
    b.writeBigUInt64LE(42n, h.fields.name_hash.offset);
    b.writeUInt16LE(2, h.fields.count.offset);
    b.writeUInt8(11, h.fields.name_len.offset);
    b.write('example.com', h.size, 'latin1');
    b.writeBigUInt64LE(5_000_000_000n, first + e.fields.expiry_ns.offset);
    b.writeUInt32LE(3, first + e.fields.set_id.offset);
    b.writeUInt8(4, first + e.fields.family.offset);
    Buffer.from([198, 18, 0, 1]).copy(b, first + e.fields.addr.offset);
    const second = first + e.size;
    b.writeBigUInt64LE(6_000_000_000n, second + e.fields.expiry_ns.offset);
    b.writeUInt32LE(4, second + e.fields.set_id.offset);
    b.writeUInt8(6, second + e.fields.family.offset);
    Buffer.from('fd000000000000000000000000000001', 'hex').copy(b, second + e.fields.addr.offset);
    expect(decodeEvents(b)).toEqual([
      { setId: 3, family: 4, address: '198.18.0.1', expiryNs: 5_000_000_000n, nameHash: 42n, name: 'example.com' },
      { setId: 4, family: 6, address: 'fd00::1', expiryNs: 6_000_000_000n, nameHash: 42n, name: 'example.com' },
    ]);
    expect(() => decodeEvents(b.subarray(0, first + e.size))).toThrow(/11-byte name and 2 entries/);
  });

  it('a record of the root name has no name bytes', () => {
    const h = STRUCT_LAYOUTS.dnsplane_event_header;
    const e = STRUCT_LAYOUTS.dnsplane_event_entry;
    const b = Buffer.alloc(h.size + e.size);
    b.writeUInt16LE(1, h.fields.count.offset);
    b.writeBigUInt64LE(7n, h.size + e.fields.expiry_ns.offset);
    b.writeUInt32LE(9, h.size + e.fields.set_id.offset);
    b.writeUInt8(4, h.size + e.fields.family.offset);
    Buffer.from([198, 18, 0, 2]).copy(b, h.size + e.fields.addr.offset);
    expect(decodeEvents(b)).toEqual([{ setId: 9, family: 4, address: '198.18.0.2', expiryNs: 7n, nameHash: 0n, name: '' }]);
  });
});
