// The TypeScript codecs (src/maps.ts) against the compiled object's BTF: every shared struct
// has the size and member offsets the codecs use, and every map has the key/value types the
// TypeScript side encodes. Needs only the object file and bpftool (no privileges).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ANSWER_MARK_INTERFACES, COUNTER_NAMES, DOMAIN_IDS, MAP_NAMES, PATTERN_SLOTS, QUERY_SETS, QUERY_WAYS, STRUCT_LAYOUTS } from '../src/maps.js';
import { PARSER_OBJECT_PATH } from '../src/parser-program.js';
import { ENDPOINT_SETS_CAPACITY, ENDPOINT_SETS_LAYOUTS, ENDPOINT_SETS_MAP } from '../src/endpoint-sets.js';
import { MEMBERSHIP_MARK_OBJECT_PATH } from '../src/membership-marker.js';
import { XT_MEMBER_OBJECT_PATH } from '../src/membership-match.js';
import { BtfDump } from './btf-dump.js';

describe('map layouts: src/maps.ts matches the BTF of bpf/dnsplane.bpf.o', () => {
  it('the object is built (make -C packages/bpf-parser/bpf)', () => {
    expect(existsSync(PARSER_OBJECT_PATH)).toBe(true);
  });
  const btf = existsSync(PARSER_OBJECT_PATH) ? BtfDump.ofObject(PARSER_OBJECT_PATH) : undefined;

  for (const [name, layout] of Object.entries(STRUCT_LAYOUTS)) {
    it(`struct ${name}`, () => {
      const struct = btf?.struct(name);
      expect(struct, `struct ${name} is not in the BTF`).toBeDefined();
      expect(struct?.size).toBe(layout.size);
      expect(Object.keys(struct?.members ?? {}).sort()).toEqual(Object.keys(layout.fields).sort());
      for (const [field, f] of Object.entries(layout.fields)) {
        expect(struct?.members[field], `${name}.${field}`).toEqual({ offset: f.offset, size: f.size });
      }
    });
  }

  it('maps have the key and value types the codecs encode', () => {
    const expected: Record<string, { key?: string; value?: string; maxEntries?: number }> = {
      [MAP_NAMES.config]: { key: '__u32', value: 'dnsplane_config', maxEntries: 1 },
      [MAP_NAMES.table]: { key: '__u32', value: 'dnsplane_table_info', maxEntries: 1 },
      [MAP_NAMES.queries]: { key: '__u32', value: 'dnsplane_query_set', maxEntries: QUERY_SETS },
      [MAP_NAMES.domains]: { key: '__u64', value: 'dnsplane_domain_entry' },
      [MAP_NAMES.patterns]: { key: '__u32', value: 'dnsplane_pattern', maxEntries: PATTERN_SLOTS },
      [MAP_NAMES.members4]: { key: 'dnsplane_member4_key', value: 'dnsplane_member_value' },
      [MAP_NAMES.members6]: { key: 'dnsplane_member6_key', value: 'dnsplane_member_value' },
      [MAP_NAMES.counters]: { key: '__u32', value: '__u64', maxEntries: COUNTER_NAMES.length },
      [MAP_NAMES.wakeSets]: { key: '__u32', value: '__u8' },
      [MAP_NAMES.answerMarks]: { key: '__u32', value: '__u32', maxEntries: ANSWER_MARK_INTERFACES },
    };
    for (const [map, want] of Object.entries(expected)) {
      const got = btf?.mapTypes(map);
      expect({ map, ...got, ...(want.maxEntries === undefined ? { maxEntries: undefined } : {}) }).toEqual({
        map,
        ...want,
        ...(want.maxEntries === undefined ? { maxEntries: undefined } : {}),
      });
    }
    expect(STRUCT_LAYOUTS.dnsplane_domain_entry.fields.ids.size).toBe(4 * DOMAIN_IDS);
    expect(STRUCT_LAYOUTS.dnsplane_query_set.size).toBe(QUERY_WAYS * STRUCT_LAYOUTS.dnsplane_query_entry.size);
  });
});

describe('map layouts of the membership readers (xt_member.bpf.o, membership_mark.bpf.o)', () => {
  const objects = { xtMember: XT_MEMBER_OBJECT_PATH, membershipMark: MEMBERSHIP_MARK_OBJECT_PATH };
  it('the objects are built', () => {
    for (const path of Object.values(objects)) expect(existsSync(path), path).toBe(true);
  });
  const mark = existsSync(MEMBERSHIP_MARK_OBJECT_PATH) ? BtfDump.ofObject(MEMBERSHIP_MARK_OBJECT_PATH) : undefined;
  const xt = existsSync(XT_MEMBER_OBJECT_PATH) ? BtfDump.ofObject(XT_MEMBER_OBJECT_PATH) : undefined;

  for (const [name, layout] of Object.entries(ENDPOINT_SETS_LAYOUTS)) {
    it(`struct ${name}`, () => {
      const struct = mark?.struct(name);
      expect(struct, `struct ${name} is not in the BTF`).toBeDefined();
      expect(struct?.size).toBe(layout.size);
      expect(Object.keys(struct?.members ?? {}).sort()).toEqual(Object.keys(layout.fields).sort());
      for (const [field, f] of Object.entries(layout.fields)) {
        expect(struct?.members[field], `${name}.${field}`).toEqual({ offset: f.offset, size: f.size });
      }
    });
  }

  it('dnsp_endpoint_sets and the shared membership maps have the expected types', () => {
    expect(mark?.mapTypes(ENDPOINT_SETS_MAP)).toEqual({ key: '__u32', value: 'dnsplane_endpoint_sets', maxEntries: ENDPOINT_SETS_CAPACITY });
    for (const btf of [mark, xt]) {
      expect(btf?.mapTypes(MAP_NAMES.members4)).toEqual({ key: 'dnsplane_member4_key', value: 'dnsplane_member_value', maxEntries: 131072 });
      expect(btf?.mapTypes(MAP_NAMES.members6)).toEqual({ key: 'dnsplane_member6_key', value: 'dnsplane_member_value', maxEntries: 131072 });
    }
    // the parser declares them through the same header: identical definitions
    const parser = BtfDump.ofObject(PARSER_OBJECT_PATH);
    expect(parser.mapTypes(MAP_NAMES.members4)).toEqual(xt?.mapTypes(MAP_NAMES.members4));
    expect(parser.mapTypes(MAP_NAMES.members6)).toEqual(xt?.mapTypes(MAP_NAMES.members6));
    for (const struct of ['dnsplane_member4_key', 'dnsplane_member6_key', 'dnsplane_member_value'] as const) {
      expect(mark?.struct(struct)?.size, struct).toBe(STRUCT_LAYOUTS[struct].size);
    }
  });
});
