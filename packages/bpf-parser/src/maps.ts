// The TypeScript side of bpf/dnsplane_maps.h: map names, struct layouts and the encoders and
// decoders of every key and value the parser shares with userspace. `STRUCT_LAYOUTS` is
// compared with the compiled object's BTF in test/maps-btf.test.ts, so the two sides cannot
// drift: change the header and that test names the field to fix here.
import type { IpFamily } from '@dnsplane/core';
import { MAX_TRUSTED_SERVERS, PARSER_COUNTERS, formatAddress, parseAddress } from '@dnsplane/core';

/** Names of the pinned maps (each pinned as <pin root>/<name>). */
export const MAP_NAMES = {
  config: 'dnsp_config',
  table: 'dnsp_table',
  queries: 'dnsp_queries',
  domains: 'dnsp_domains',
  patterns: 'dnsp_patterns',
  members4: 'dnsp_members4',
  members6: 'dnsp_members6',
  counters: 'dnsp_counters',
  events: 'dnsp_events',
  wakeSets: 'dnsp_wake_sets',
  answerMarks: 'dnsp_answer_marks',
} as const;
export type ParserMapRole = keyof typeof MAP_NAMES;
/** Not pinned: the messages and datagrams held for their missing pieces (per load). */
export const ASSEMBLY_MAP_NAME = 'dnsp_assembly';

/** Entry points of the object (bpf/dnsplane.bpf.c). */
export const PROGRAM_NAMES = {
  /** Socket filter for xt_bpf: packet data starts at the IP header; returns skb->len (a match). */
  socketFilter: 'dnsplane_parse_socket',
  /** tc classifier: packet data starts at the Ethernet header; returns TC_ACT_UNSPEC. */
  tcClassifier: 'dnsplane_parse_tc',
} as const;

// Constants of dnsplane_maps.h.
export const DOMAIN_IDS = 62;
export const PATTERN_LABELS = 8;
export const PATTERN_TEXT = 64;
export const PATTERN_SLOTS = 4096;
/** The domain table has two generations (see dnsplane_table_info); each has half the pattern slots. */
export type TableGeneration = 0 | 1;
export const PATTERN_SLOTS_PER_GENERATION = PATTERN_SLOTS / 2;
/** Bit 63 of a dnsp_domains key says which generation it belongs to. */
export const KEY_GENERATION_BIT = 1n << 63n;
export const NAME_TEXT = 256;
export const MSG_MAX = 4096;
/** The trusted servers dnsp_config holds (DNSPLANE_MAX_SERVERS; the config schema allows as many: MAX_TRUSTED_SERVERS). */
export const MAX_SERVERS = MAX_TRUSTED_SERVERS;
export const EVENT_ENTRIES = 32;
/** A learned-events record pads the question name to a multiple of this many bytes. */
export const EVENT_NAME_ALIGN = 8;
/** dnsp_answer_marks holds at most this many interfaces. */
export const ANSWER_MARK_INTERFACES = 4096;
/** dnsp_queries: an array of this many sets of QUERY_WAYS remembered queries (set-associative). */
export const QUERY_SETS = 16384;
export const QUERY_WAYS = 4;

/** enum dnsplane_pattern_label_kind. */
export const PatternLabelKind = { Literal: 1, Glob: 2, AnyOne: 3, AnyMany: 4 } as const;
export type PatternLabelKind = (typeof PatternLabelKind)[keyof typeof PatternLabelKind];

/**
 * Counter names by index (enum dnsplane_counter): the reference parser's outcomes, in the same
 * order, plus the kernel-only counts of ring-buffer records that found no room and of verified
 * answers given the answer mark (the nftables dataplane's untracked DNS; they pass rules that
 * do not count).
 */
export const COUNTER_NAMES = [...PARSER_COUNTERS, 'events_lost', 'answers_marked'] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];

export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}
export interface StructLayout {
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
}

/** Byte layout of every shared struct, as the codecs below use it. */
export const STRUCT_LAYOUTS = {
  dnsplane_server: {
    size: 20,
    fields: {
      addr: { offset: 0, size: 16 },
      port: { offset: 16, size: 2 },
      family: { offset: 18, size: 1 },
      pad: { offset: 19, size: 1 },
    },
  },
  dnsplane_config: {
    size: 16 + 20 * MAX_SERVERS,
    fields: {
      min_ttl: { offset: 0, size: 4 },
      extra_ttl: { offset: 4, size: 4 },
      max_addresses_per_name: { offset: 8, size: 4 },
      server_count: { offset: 12, size: 4 },
      servers: { offset: 16, size: 20 * MAX_SERVERS },
    },
  },
  dnsplane_table_info: {
    size: 8,
    fields: {
      min_suffix_labels: { offset: 0, size: 1 },
      max_suffix_labels: { offset: 1, size: 1 },
      generation: { offset: 2, size: 1 },
      flags: { offset: 3, size: 1 },
      entries: { offset: 4, size: 4 },
    },
  },
  dnsplane_query_key: {
    size: 32,
    fields: {
      qname_hash: { offset: 0, size: 8 },
      addr: { offset: 8, size: 16 },
      port: { offset: 24, size: 2 },
      txid: { offset: 26, size: 2 },
      family: { offset: 28, size: 1 },
      pad: { offset: 29, size: 3 },
    },
  },
  dnsplane_query_value: {
    size: 16,
    fields: { expiry_ns: { offset: 0, size: 8 }, answer_mark: { offset: 8, size: 4 }, pad: { offset: 12, size: 4 } },
  },
  dnsplane_query_entry: {
    size: 48,
    fields: { key: { offset: 0, size: 32 }, value: { offset: 32, size: 16 } },
  },
  dnsplane_query_set: {
    size: 48 * QUERY_WAYS,
    fields: { ways: { offset: 0, size: 48 * QUERY_WAYS } },
  },
  dnsplane_domain_entry: {
    size: 4 + 4 * DOMAIN_IDS,
    fields: {
      exact: { offset: 0, size: 1 },
      any_many: { offset: 1, size: 1 },
      any_one: { offset: 2, size: 1 },
      complex: { offset: 3, size: 1 },
      ids: { offset: 4, size: 4 * DOMAIN_IDS },
    },
  },
  dnsplane_pattern: {
    size: 24 + PATTERN_LABELS * PATTERN_TEXT,
    fields: {
      set_id: { offset: 0, size: 4 },
      label_count: { offset: 4, size: 1 },
      reserved: { offset: 5, size: 1 },
      kind: { offset: 6, size: PATTERN_LABELS },
      len: { offset: 14, size: PATTERN_LABELS },
      pad: { offset: 22, size: 2 },
      text: { offset: 24, size: PATTERN_LABELS * PATTERN_TEXT },
    },
  },
  dnsplane_member4_key: {
    size: 8,
    fields: { set_id: { offset: 0, size: 4 }, addr: { offset: 4, size: 4 } },
  },
  dnsplane_member6_key: {
    size: 20,
    fields: { set_id: { offset: 0, size: 4 }, addr: { offset: 4, size: 16 } },
  },
  dnsplane_member_value: { size: 8, fields: { expiry_ns: { offset: 0, size: 8 } } },
  dnsplane_event_header: {
    size: 16,
    fields: {
      name_hash: { offset: 0, size: 8 },
      count: { offset: 8, size: 2 },
      name_len: { offset: 10, size: 1 },
      pad: { offset: 11, size: 5 },
    },
  },
  dnsplane_event_entry: {
    size: 32,
    fields: {
      expiry_ns: { offset: 0, size: 8 },
      set_id: { offset: 8, size: 4 },
      family: { offset: 12, size: 1 },
      pad: { offset: 13, size: 3 },
      addr: { offset: 16, size: 16 },
    },
  },
} as const satisfies Record<string, StructLayout>;

const L = STRUCT_LAYOUTS;

/** The address bytes of a canonical address text; RangeError when it is not one of `family`. */
export function addressBytes(address: string, family?: IpFamily): Uint8Array {
  const parsed = parseAddress(address);
  if (parsed === undefined || (family !== undefined && parsed.family !== family)) {
    throw new RangeError(`not an IPv${family ?? '4/6'} address: ${address}`);
  }
  return parsed.bytes;
}

function u32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`${what} must be a 32-bit unsigned integer, not ${value}`);
  return value;
}

// ---------------------------------------------------------------- config

/** A trusted DNS server. */
export interface ServerAddress {
  readonly family: IpFamily;
  readonly address: string;
  readonly port: number;
}

export interface ParserConfig {
  readonly minTTL: number;
  readonly extraTTL: number;
  readonly maxAddressesPerName: number;
  readonly trustedServers: readonly ServerAddress[];
}

export function encodeConfig(config: ParserConfig): Buffer {
  const f = L.dnsplane_config.fields;
  const sf = L.dnsplane_server.fields;
  if (config.trustedServers.length > MAX_SERVERS) {
    throw new RangeError(`the parser holds at most ${MAX_SERVERS} trusted servers, not ${config.trustedServers.length}`);
  }
  const b = Buffer.alloc(L.dnsplane_config.size);
  b.writeUInt32LE(u32(config.minTTL, 'minTTL'), f.min_ttl.offset);
  b.writeUInt32LE(u32(config.extraTTL, 'extraTTL'), f.extra_ttl.offset);
  b.writeUInt32LE(u32(config.maxAddressesPerName, 'maxAddressesPerName'), f.max_addresses_per_name.offset);
  b.writeUInt32LE(config.trustedServers.length, f.server_count.offset);
  config.trustedServers.forEach((server, i) => {
    const at = f.servers.offset + i * L.dnsplane_server.size;
    if (!Number.isInteger(server.port) || server.port < 1 || server.port > 0xffff) {
      throw new RangeError(`trusted server port must be 1..65535, not ${server.port}`);
    }
    b.set(addressBytes(server.address, server.family), at + sf.addr.offset);
    b.writeUInt16BE(server.port, at + sf.port.offset);
    b.writeUInt8(server.family, at + sf.family.offset);
  });
  return b;
}

export function decodeConfig(b: Buffer): ParserConfig {
  const f = L.dnsplane_config.fields;
  const sf = L.dnsplane_server.fields;
  const count = Math.min(b.readUInt32LE(f.server_count.offset), MAX_SERVERS);
  const trustedServers: ServerAddress[] = [];
  for (let i = 0; i < count; i++) {
    const at = f.servers.offset + i * L.dnsplane_server.size;
    const family = b.readUInt8(at + sf.family.offset) === 6 ? 6 : 4;
    const bytes = b.subarray(at + sf.addr.offset, at + sf.addr.offset + (family === 4 ? 4 : 16));
    trustedServers.push({ family, address: formatAddress({ family, bytes }), port: b.readUInt16BE(at + sf.port.offset) });
  }
  return {
    minTTL: b.readUInt32LE(f.min_ttl.offset),
    extraTTL: b.readUInt32LE(f.extra_ttl.offset),
    maxAddressesPerName: b.readUInt32LE(f.max_addresses_per_name.offset),
    trustedServers,
  };
}

/** Bounds of the domain table's keys (dnsp_table). */
export interface TableInfo {
  readonly minSuffixLabels: number;
  readonly maxSuffixLabels: number;
  readonly entries: number;
  /** The live generation (default 0). */
  readonly generation?: TableGeneration;
  /** dnsp_wake_sets holds sets whose learned events wake the reader (default false: none do). */
  readonly wakeSets?: boolean;
  /** Learned events are written to the ring buffer (default true; false: nobody reads them). */
  readonly events?: boolean;
}

/** dnsplane_table_info.flags: DNSPLANE_TABLE_WAKE_SETS, DNSPLANE_TABLE_NO_EVENTS. */
export const TABLE_WAKE_SETS = 1;
export const TABLE_NO_EVENTS = 2;

export function encodeTableInfo(info: TableInfo): Buffer {
  const f = L.dnsplane_table_info.fields;
  const b = Buffer.alloc(L.dnsplane_table_info.size);
  b.writeUInt8(info.minSuffixLabels, f.min_suffix_labels.offset);
  b.writeUInt8(info.maxSuffixLabels, f.max_suffix_labels.offset);
  b.writeUInt8(info.generation ?? 0, f.generation.offset);
  b.writeUInt8((info.wakeSets === true ? TABLE_WAKE_SETS : 0) | (info.events === false ? TABLE_NO_EVENTS : 0), f.flags.offset);
  b.writeUInt32LE(info.entries, f.entries.offset);
  return b;
}

export function decodeTableInfo(b: Buffer): TableInfo {
  const f = L.dnsplane_table_info.fields;
  return {
    minSuffixLabels: b.readUInt8(f.min_suffix_labels.offset),
    maxSuffixLabels: b.readUInt8(f.max_suffix_labels.offset),
    entries: b.readUInt32LE(f.entries.offset),
    generation: (b.readUInt8(f.generation.offset) & 1) as TableGeneration,
    wakeSets: (b.readUInt8(f.flags.offset) & TABLE_WAKE_SETS) !== 0,
    events: (b.readUInt8(f.flags.offset) & TABLE_NO_EVENTS) === 0,
  };
}

/** Key of an array map. */
export function arrayIndex(index: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(index);
  return b;
}

// ---------------------------------------------------------------- remembered queries

export interface QueryKey {
  readonly qnameHash: bigint;
  readonly family: IpFamily;
  readonly address: string;
  readonly port: number;
  readonly txid: number;
}

export function encodeQueryKey(key: QueryKey): Buffer {
  const f = L.dnsplane_query_key.fields;
  const b = Buffer.alloc(L.dnsplane_query_key.size);
  b.writeBigUInt64LE(key.qnameHash, f.qname_hash.offset);
  b.set(addressBytes(key.address, key.family), f.addr.offset);
  b.writeUInt16BE(key.port, f.port.offset);
  b.writeUInt16BE(key.txid, f.txid.offset);
  b.writeUInt8(key.family, f.family.offset);
  return b;
}

const MASK64 = (1n << 64n) - 1n;

/**
 * The dnsp_queries set of a key, as the parser computes it (query_set_of): its four 64-bit
 * words mixed. For tests that need queries sharing a set.
 */
export function querySetOf(key: QueryKey): number {
  const b = encodeQueryKey(key);
  const w = [0, 8, 16, 24].map((offset) => b.readBigUInt64LE(offset));
  let h = w[0]! ^ ((w[1]! * 0x100000001b3n) & MASK64) ^ ((w[2]! * 0x9e3779b97f4a7c15n) & MASK64) ^ w[3]!;
  h = (h * 0x9e3779b97f4a7c15n) & MASK64;
  return Number((h >> 32n) & BigInt(QUERY_SETS - 1));
}

export function decodeQueryKey(b: Buffer): QueryKey {
  const f = L.dnsplane_query_key.fields;
  const family = b.readUInt8(f.family.offset) === 6 ? 6 : 4;
  return {
    qnameHash: b.readBigUInt64LE(f.qname_hash.offset),
    family,
    address: formatAddress({ family, bytes: b.subarray(f.addr.offset, f.addr.offset + (family === 4 ? 4 : 16)) }),
    port: b.readUInt16BE(f.port.offset),
    txid: b.readUInt16BE(f.txid.offset),
  };
}

/** A u64 (expiry in ns) value. */
export function encodeExpiry(expiryNs: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(expiryNs);
  return b;
}

export function decodeExpiry(b: Buffer, offset = 0): bigint {
  return b.readBigUInt64LE(offset);
}

// ---------------------------------------------------------------- domain table

/** The ids one dnsp_domains entry holds, by kind (see struct dnsplane_domain_entry). */
export interface DomainEntry {
  readonly exact: readonly number[];
  readonly anyMany: readonly number[];
  readonly anyOne: readonly number[];
  /** Indexes into dnsp_patterns. */
  readonly complex: readonly number[];
}

export function domainEntryIdCount(entry: DomainEntry): number {
  return entry.exact.length + entry.anyMany.length + entry.anyOne.length + entry.complex.length;
}

/** The dnsp_domains key of a suffix hash in a generation: bit 63 is the generation. */
export function domainKeyOf(hash: bigint, generation: TableGeneration = 0): bigint {
  return (hash & ~KEY_GENERATION_BIT) | (generation === 1 ? KEY_GENERATION_BIT : 0n);
}

export function encodeDomainKey(hash: bigint, generation: TableGeneration = 0): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(domainKeyOf(hash, generation));
  return b;
}

/** The generation a dnsp_domains key belongs to. */
export function domainKeyGeneration(key: Buffer): TableGeneration {
  return (key.readBigUInt64LE(0) & KEY_GENERATION_BIT) === 0n ? 0 : 1;
}

export function encodeDomainEntry(entry: DomainEntry): Buffer {
  const f = L.dnsplane_domain_entry.fields;
  const total = domainEntryIdCount(entry);
  if (total > DOMAIN_IDS) throw new RangeError(`a domain-table entry holds at most ${DOMAIN_IDS} ids, not ${total}`);
  const b = Buffer.alloc(L.dnsplane_domain_entry.size);
  b.writeUInt8(entry.exact.length, f.exact.offset);
  b.writeUInt8(entry.anyMany.length, f.any_many.offset);
  b.writeUInt8(entry.anyOne.length, f.any_one.offset);
  b.writeUInt8(entry.complex.length, f.complex.offset);
  [...entry.exact, ...entry.anyMany, ...entry.anyOne, ...entry.complex].forEach((id, i) =>
    b.writeUInt32LE(u32(id, 'domain-table id'), f.ids.offset + 4 * i),
  );
  return b;
}

export function decodeDomainEntry(b: Buffer): DomainEntry {
  const f = L.dnsplane_domain_entry.fields;
  const counts = [f.exact, f.any_many, f.any_one, f.complex].map((x) => b.readUInt8(x.offset));
  const ids: number[] = [];
  const total = counts.reduce((a, c) => a + c, 0);
  for (let i = 0; i < Math.min(total, DOMAIN_IDS); i++) ids.push(b.readUInt32LE(f.ids.offset + 4 * i));
  const [e = 0, m = 0, o = 0] = counts;
  return { exact: ids.slice(0, e), anyMany: ids.slice(e, e + m), anyOne: ids.slice(e + m, e + m + o), complex: ids.slice(e + m + o) };
}

export interface PatternRecordLabel {
  readonly kind: PatternLabelKind;
  /** Literal text, or the glob with `*` (lower-case ASCII); empty for wildcards. */
  readonly text: string;
}

/** A complex pattern's labels left of its literal suffix, with the set it credits. */
export interface PatternRecord {
  readonly setId: number;
  readonly labels: readonly PatternRecordLabel[];
}

export function encodePattern(record: PatternRecord): Buffer {
  const f = L.dnsplane_pattern.fields;
  if (record.labels.length < 1 || record.labels.length > PATTERN_LABELS) {
    throw new RangeError(`a complex pattern holds 1..${PATTERN_LABELS} labels left of its literal suffix, not ${record.labels.length}`);
  }
  const b = Buffer.alloc(L.dnsplane_pattern.size);
  b.writeUInt32LE(u32(record.setId, 'set id'), f.set_id.offset);
  b.writeUInt8(record.labels.length, f.label_count.offset);
  record.labels.forEach((label, i) => {
    if (label.text.length > PATTERN_TEXT) throw new RangeError(`pattern label "${label.text}" is longer than ${PATTERN_TEXT} bytes`);
    b.writeUInt8(label.kind, f.kind.offset + i);
    b.writeUInt8(label.text.length, f.len.offset + i);
    b.write(label.text, f.text.offset + i * PATTERN_TEXT, 'latin1');
  });
  return b;
}

export function decodePattern(b: Buffer): PatternRecord {
  const f = L.dnsplane_pattern.fields;
  const count = b.readUInt8(f.label_count.offset);
  const labels: PatternRecordLabel[] = [];
  for (let i = 0; i < Math.min(count, PATTERN_LABELS); i++) {
    const len = b.readUInt8(f.len.offset + i);
    const at = f.text.offset + i * PATTERN_TEXT;
    labels.push({ kind: b.readUInt8(f.kind.offset + i) as PatternLabelKind, text: b.toString('latin1', at, at + len) });
  }
  return { setId: b.readUInt32LE(f.set_id.offset), labels };
}

// ---------------------------------------------------------------- membership

export interface MemberKey {
  readonly setId: number;
  readonly family: IpFamily;
  readonly address: string;
}

/** Key of dnsp_members4 (family 4) or dnsp_members6 (family 6). */
export function encodeMemberKey(key: MemberKey): Buffer {
  const layout = key.family === 4 ? L.dnsplane_member4_key : L.dnsplane_member6_key;
  const b = Buffer.alloc(layout.size);
  b.writeUInt32LE(u32(key.setId, 'set id'), layout.fields.set_id.offset);
  b.set(addressBytes(key.address, key.family), layout.fields.addr.offset);
  return b;
}

/** The member key at `offset` of `b` (a batch read holds many). */
export function decodeMemberKey(family: IpFamily, b: Buffer, offset = 0): MemberKey {
  const layout = family === 4 ? L.dnsplane_member4_key : L.dnsplane_member6_key;
  const at = offset + layout.fields.addr.offset;
  return {
    setId: b.readUInt32LE(offset + layout.fields.set_id.offset),
    family,
    address: formatAddress({ family, bytes: b.subarray(at, at + layout.fields.addr.size) }),
  };
}

// ---------------------------------------------------------------- events

/** One ring-buffer record: a (set, address, expiry) the parser wrote. */
export interface LearnedEvent {
  readonly setId: number;
  readonly family: IpFamily;
  readonly address: string;
  /** CLOCK_MONOTONIC ns: the expiry now stored (the later of the old and the new). */
  readonly expiryNs: bigint;
  /** Hash of the question name (name-hash.ts). */
  readonly nameHash: bigint;
  /** The question name, lower-case, dotted, no trailing dot. */
  readonly name: string;
}

/** Bytes the question name takes in a learned-events record: its length padded to EVENT_NAME_ALIGN. */
export function eventNameBytes(nameLength: number): number {
  return Math.ceil(nameLength / EVENT_NAME_ALIGN) * EVENT_NAME_ALIGN;
}

/**
 * Decodes one ring-buffer record: a header, the question name (name_len bytes, padded to
 * EVENT_NAME_ALIGN) and one entry per (set, address, expiry) written — one LearnedEvent each.
 */
export function decodeEvents(b: Buffer): LearnedEvent[] {
  const h = L.dnsplane_event_header;
  const e = L.dnsplane_event_entry;
  if (b.length < h.size) throw new RangeError(`a learned-events record has at least ${h.size} bytes, not ${b.length}`);
  const count = b.readUInt16LE(h.fields.count.offset);
  const nameLength = b.readUInt8(h.fields.name_len.offset);
  const entriesAt = h.size + eventNameBytes(nameLength);
  if (b.length < entriesAt + count * e.size) {
    throw new RangeError(
      `a learned-events record of a ${nameLength}-byte name and ${count} entries has ${entriesAt + count * e.size} bytes, not ${b.length}`,
    );
  }
  const nameHash = b.readBigUInt64LE(h.fields.name_hash.offset);
  const name = b.toString('latin1', h.size, h.size + nameLength);
  const out: LearnedEvent[] = [];
  for (let i = 0; i < count; i++) {
    const at = entriesAt + i * e.size;
    const family = b.readUInt8(at + e.fields.family.offset) === 6 ? 6 : 4;
    const addr = at + e.fields.addr.offset;
    out.push({
      setId: b.readUInt32LE(at + e.fields.set_id.offset),
      family,
      address: formatAddress({ family, bytes: b.subarray(addr, addr + (family === 4 ? 4 : 16)) }),
      expiryNs: b.readBigUInt64LE(at + e.fields.expiry_ns.offset),
      nameHash,
      name,
    });
  }
  return out;
}
