// The TypeScript codecs (src/maps.ts) against the compiled object's BTF: every shared struct
// has the size and member offsets the codecs use, and every map has the key/value types the
// TypeScript side encodes. Needs only the object file and bpftool (no privileges).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COUNTER_NAMES, DOMAIN_IDS, MAP_NAMES, PATTERN_SLOTS, STRUCT_LAYOUTS } from '../src/maps.js';
import { PARSER_OBJECT_PATH } from '../src/parser-program.js';
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
      [MAP_NAMES.queries]: { key: 'dnsplane_query_key', value: 'dnsplane_query_value' },
      [MAP_NAMES.domains]: { key: '__u64', value: 'dnsplane_domain_entry' },
      [MAP_NAMES.patterns]: { key: '__u32', value: 'dnsplane_pattern', maxEntries: PATTERN_SLOTS },
      [MAP_NAMES.members4]: { key: 'dnsplane_member4_key', value: 'dnsplane_member_value' },
      [MAP_NAMES.members6]: { key: 'dnsplane_member6_key', value: 'dnsplane_member_value' },
      [MAP_NAMES.counters]: { key: '__u32', value: '__u64', maxEntries: COUNTER_NAMES.length },
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
  });
});
