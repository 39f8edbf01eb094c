// Seeded generator of DNS exchanges for the differential tests: a query and its response, as
// L3 packets, built byte by byte (compression pointers included — dns-packet never writes
// them), then optionally mutated: truncated, bytes flipped, bad pointers, flags and counts
// changed, untrusted source, no matching query, TCP framing. Every case is a pure function of
// its seed, so a failing case is replayed from the seed alone.
import { buildDnsPacket, type DnsSettings, type IpFamily } from '@dnsplane/core';
import { prng } from '../../core/test/prng.js';

/** mulberry32, shared with core's tests (bench/paired.ts takes it from here). */
export { prng };

/** The seed of case `index` of a run seeded with `runSeed`. */
export function caseSeed(runSeed: number, index: number): number {
  let h = (runSeed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export const SERVER4 = '198.18.0.53';
export const SERVER6 = 'fd00::53';
export const CLIENT4 = '198.18.1.10';
export const CLIENT6 = 'fd00::1:10';
export const ROGUE4 = '198.18.0.66';
export const ROGUE6 = 'fd00::66';
/** The trusted servers of the parser tests: SERVER4 and SERVER6, port 53. */
export const TRUSTED_SERVERS: DnsSettings['trustedServers'] = [
  { family: 4, address: SERVER4, port: 53 },
  { family: 6, address: SERVER6, port: 53 },
];

const LABELS = [
  'www', 'api', 'cdn', 'example', 'com', 'net', 'a', 'b', 's3', 'amazonaws', 'x1', 'xy1', 'api-v1', 'api-eu',
  'edge', 'test', 'github', 'foo', 'bar', 'mail', 'z',
];
const TLDS = ['com', 'net', 'org', 'test'];

class Rand {
  constructor(readonly next: () => number) {}
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

function randomLabel(r: Rand): string {
  if (r.chance(0.85)) return r.pick(LABELS);
  const len = r.chance(0.1) ? 63 : r.range(1, 20);
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789-_';
  let s = '';
  for (let i = 0; i < len; i++) s += chars[r.int(chars.length)];
  return s;
}

/** A name as labels; mostly names the test domain sets care about. */
function randomName(r: Rand): string[] {
  const shape = r.int(12);
  if (shape === 6) return [randomLabel(r), randomLabel(r), 'a', 'a'];
  if (shape === 7) return ['bar', randomLabel(r), r.pick(['zz', 'zaz', 'z1z', 'zoo', 'z'])];
  if (shape === 0) return ['www', 'example', 'com'];
  if (shape === 1) return [randomLabel(r), 'example', 'com'];
  if (shape === 2) return [...Array.from({ length: r.range(1, 3) }, () => randomLabel(r)), 's3', 'amazonaws', 'com'];
  if (shape === 3) return ['www', randomLabel(r), r.pick(TLDS)];
  if (shape === 4) return [randomLabel(r), 'example', 'net'];
  if (shape === 5) {
    // near the 255-byte limit
    const labels: string[] = [];
    let wire = 1;
    const target = r.range(240, 262);
    while (wire < target) {
      const len = Math.min(63, Math.max(1, target - wire - 1));
      labels.push('a'.repeat(len));
      wire += len + 1;
    }
    return labels;
  }
  return Array.from({ length: r.range(1, 5) }, () => randomLabel(r));
}

function randomCase(r: Rand, label: string): string {
  let out = '';
  for (const ch of label) out += r.chance(0.5) ? ch.toUpperCase() : ch;
  return out;
}

/** A DNS message writer that can point back at names it wrote. */
class MessageWriter {
  readonly bytes: number[] = [];
  /** Offsets where each written name (by its lower-case text) and each of its suffixes starts. */
  readonly names = new Map<string, number>();

  u8(v: number): void {
    this.bytes.push(v & 0xff);
  }
  u16(v: number): void {
    this.u8(v >> 8);
    this.u8(v);
  }
  u32(v: number): void {
    this.u16(v >>> 16);
    this.u16(v & 0xffff);
  }
  get length(): number {
    return this.bytes.length;
  }
  set16(at: number, v: number): void {
    this.bytes[at] = (v >> 8) & 0xff;
    this.bytes[at + 1] = v & 0xff;
  }

  /** Writes a name; `compress`: replace the longest suffix already written with a pointer. */
  name(labels: readonly string[], compress: boolean, r: Rand): void {
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const at = this.names.get(suffix);
      if (compress && at !== undefined && at < 0x4000) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.length < 0x4000 && !this.names.has(suffix)) this.names.set(suffix, this.length);
      const label = labels[i] ?? '';
      this.u8(label.length);
      for (const ch of randomCase(r, label)) this.u8(ch.charCodeAt(0));
    }
    this.u8(0);
  }
}

type RecordSpec =
  | { kind: 'A' | 'AAAA'; owner: string[]; ttl: number; address: Uint8Array }
  | { kind: 'CNAME'; owner: string[]; ttl: number; target: string[] }
  | { kind: 'TXT'; owner: string[]; ttl: number; data: Uint8Array }
  | { kind: 'A-CH'; owner: string[]; ttl: number; address: Uint8Array };

function randomAddress(r: Rand, family: IpFamily): Uint8Array {
  if (family === 4) return Uint8Array.from([198, 18 + r.int(2), r.int(256), r.int(256)]);
  const b = new Uint8Array(16);
  b[0] = 0xfd;
  for (let i = 8; i < 16; i++) b[i] = r.chance(0.5) ? 0 : r.int(256);
  return b;
}

function randomTtl(r: Rand): number {
  const pick = r.int(6);
  if (pick === 0) return 0;
  if (pick === 1) return r.range(1, 29);
  if (pick === 2) return 0xffffffff - r.int(3);
  return r.range(30, 100_000);
}

export interface BuiltMessage {
  readonly bytes: Uint8Array;
  readonly id: number;
  readonly qname: string[];
}

/** A well-formed response: question, an answer section with a CNAME chain, A/AAAA, noise. */
export function buildResponse(r: Rand, options: { answers?: number } = {}): BuiltMessage {
  const qname = randomName(r);
  const compress = r.chance(0.7);
  const id = r.int(0x10000);
  const records: RecordSpec[] = [];
  const chain = [qname];
  const answerCount = options.answers ?? (r.chance(0.1) ? r.range(30, 70) : r.range(0, 8));
  for (let i = 0; i < answerCount; i++) {
    const k = r.int(12);
    const owner = r.chance(0.85) ? r.pick(chain) : randomName(r);
    if (k < 2 && chain.length < 10) {
      const target = r.chance(0.2) ? r.pick(chain) : randomName(r);
      records.push({ kind: 'CNAME', owner, ttl: randomTtl(r), target });
      chain.push(target);
    } else if (k < 6) records.push({ kind: 'A', owner, ttl: randomTtl(r), address: randomAddress(r, 4) });
    else if (k < 9) records.push({ kind: 'AAAA', owner, ttl: randomTtl(r), address: randomAddress(r, 6) });
    else if (k < 10) records.push({ kind: 'A-CH', owner, ttl: randomTtl(r), address: randomAddress(r, 4) });
    else records.push({ kind: 'TXT', owner, ttl: randomTtl(r), data: Uint8Array.from({ length: r.range(0, 40) }, () => r.int(256)) });
  }
  const authority: RecordSpec[] = r.chance(0.2) ? [{ kind: 'A', owner: qname, ttl: 300, address: randomAddress(r, 4) }] : [];
  const edns = r.chance(0.4);

  const w = new MessageWriter();
  w.u16(id);
  w.u16(0x8180 | (r.chance(0.3) ? 0x0400 : 0));
  w.u16(1);
  w.u16(records.length);
  w.u16(authority.length);
  w.u16(edns ? 1 : 0);
  w.name(qname, false, r);
  w.u16(r.chance(0.7) ? 1 : 28);
  w.u16(1);
  const writeRecord = (rec: RecordSpec): void => {
    w.name(rec.owner, compress, r);
    const type = rec.kind === 'A' || rec.kind === 'A-CH' ? 1 : rec.kind === 'AAAA' ? 28 : rec.kind === 'CNAME' ? 5 : 16;
    w.u16(type);
    w.u16(rec.kind === 'A-CH' ? 3 : 1);
    w.u32(rec.ttl);
    const lengthAt = w.length;
    w.u16(0);
    const start = w.length;
    if (rec.kind === 'A' || rec.kind === 'AAAA' || rec.kind === 'A-CH') for (const b of rec.address) w.u8(b);
    else if (rec.kind === 'CNAME') w.name(rec.target, compress, r);
    else if (rec.kind === 'TXT') {
      w.u8(rec.data.length);
      for (const b of rec.data) w.u8(b);
    }
    w.set16(lengthAt, w.length - start);
  };
  // BPF_PROG_TEST_RUN takes at most a page of packet: keep messages under ~1.4 kB.
  let written = 0;
  for (const rec of records) {
    if (w.length > 1300) break;
    writeRecord(rec);
    written++;
  }
  w.set16(6, written);
  authority.forEach(writeRecord);
  if (edns) {
    w.u8(0);
    w.u16(41);
    w.u16(1232);
    w.u32(0);
    w.u16(0);
  }
  return { bytes: Uint8Array.from(w.bytes), id, qname };
}

/** The query a client sends for `qname` with transaction id `id` (name case randomised). */
export function buildQuery(r: Rand, id: number, qname: readonly string[]): Uint8Array {
  const w = new MessageWriter();
  w.u16(id);
  w.u16(0x0100);
  w.u16(1);
  w.u16(0);
  w.u16(0);
  w.u16(0);
  w.name(qname, false, r);
  w.u16(1);
  w.u16(1);
  return Uint8Array.from(w.bytes);
}

export interface Exchange {
  readonly description: string;
  /** L3 packets the client sends first (queries). */
  readonly queries: readonly Uint8Array[];
  /** The L3 response packet. */
  readonly response: Uint8Array;
}

interface Endpoints {
  family: IpFamily;
  transport: 'udp' | 'tcp';
  clientPort: number;
}

function packet(e: Endpoints, fromServer: boolean, payload: Uint8Array, options: { rogue?: boolean; framing?: 'prefixed' | 'raw' } = {}): Uint8Array {
  const server = options.rogue ? (e.family === 4 ? ROGUE4 : ROGUE6) : e.family === 4 ? SERVER4 : SERVER6;
  const client = e.family === 4 ? CLIENT4 : CLIENT6;
  return buildDnsPacket({
    family: e.family,
    src: fromServer ? server : client,
    dst: fromServer ? client : server,
    sport: fromServer ? 53 : e.clientPort,
    dport: fromServer ? e.clientPort : 53,
    transport: e.transport,
    payload,
    ...(e.transport === 'tcp' ? { tcpFraming: options.framing ?? 'prefixed' } : {}),
  });
}

/** Offsets of every name start / label position a mutation may overwrite with a pointer. */
function mutatePointer(r: Rand, msg: Uint8Array): { bytes: Uint8Array; what: string } {
  const out = Uint8Array.from(msg);
  if (out.length < 14) return { bytes: out, what: 'pointer (too short)' };
  const pos = r.range(12, out.length - 2);
  const mode = r.int(5);
  let target: number;
  let what: string;
  if (mode === 0) {
    target = r.range(pos, Math.min(0x3fff, pos + 40));
    what = 'forward/self pointer';
  } else if (mode === 1) {
    target = r.range(out.length, 0x3fff);
    what = 'out-of-range pointer';
  } else if (mode === 2) {
    // a loop: a backward pointer to a spot that gets a pointer forward again
    target = r.range(12, pos - 1 >= 12 ? pos - 1 : 12);
    if (target + 1 < out.length && target < pos) {
      out[target] = 0xc0 | ((pos >> 8) & 0x3f);
      out[target + 1] = pos & 0xff;
    }
    what = 'pointer loop';
  } else {
    target = r.range(0, Math.max(0, pos - 1));
    what = 'backward pointer';
  }
  out[pos] = 0xc0 | ((target >> 8) & 0x3f);
  out[pos + 1] = target & 0xff;
  return { bytes: out, what: `${what} at ${pos} to ${target}` };
}

export type Mutation =
  | 'none'
  | 'truncate'
  | 'flip'
  | 'pointer'
  | 'qr-clear'
  | 'untrusted'
  | 'no-query'
  | 'other-id'
  | 'other-name'
  | 'rcode'
  | 'two-questions'
  | 'more-answers-claimed'
  | 'tcp-short-prefix'
  | 'tcp-long-prefix'
  | 'label-type'
  | 'ip-options';

const MUTATIONS: readonly Mutation[] = [
  'none', 'none', 'none', 'none', 'truncate', 'truncate', 'flip', 'flip', 'pointer', 'pointer', 'qr-clear', 'untrusted',
  'no-query', 'other-id', 'other-name', 'rcode', 'two-questions', 'more-answers-claimed', 'tcp-short-prefix',
  'tcp-long-prefix', 'label-type', 'ip-options',
];

/** The same IPv4 packet with 4 bytes of IP options (NOPs): IHL 6 (the parser reads the IHL). */
function withIpOptions(packet: Uint8Array): Uint8Array {
  if (((packet[0] ?? 0) >> 4) !== 4) return packet;
  const out = new Uint8Array(packet.length + 4);
  out.set(packet.subarray(0, 20), 0);
  out.set([1, 1, 1, 1], 20);
  out.set(packet.subarray(20), 24);
  out[0] = 0x46;
  const total = packet.length + 4;
  out[2] = total >> 8;
  out[3] = total & 0xff;
  return out;
}

/** One random exchange, a pure function of `seed`. */
export function generateExchange(seed: number, forced?: { mutation?: Mutation; cutAt?: number; baseSeed?: number }): Exchange {
  const r = new Rand(prng(seed));
  const base = forced?.baseSeed === undefined ? r : new Rand(prng(forced.baseSeed));
  const e: Endpoints = {
    family: base.chance(0.7) ? 4 : 6,
    transport: base.chance(0.75) ? 'udp' : 'tcp',
    clientPort: base.range(1024, 65535),
  };
  const built = buildResponse(base);
  const queryPayload = buildQuery(base, built.id, built.qname);
  let msg = built.bytes;
  let mutation = forced?.mutation ?? r.pick(MUTATIONS);
  if ((mutation === 'tcp-short-prefix' || mutation === 'tcp-long-prefix') && e.transport !== 'tcp') mutation = 'none';
  let what: string = mutation;
  let queries = [packet(e, false, queryPayload)];
  let rogue = false;
  let framing: 'prefixed' | 'raw' = 'prefixed';
  switch (mutation) {
    case 'truncate': {
      const cut = forced?.cutAt ?? r.int(msg.length);
      msg = msg.subarray(0, cut);
      what = `truncate at ${cut} of ${built.bytes.length}`;
      break;
    }
    case 'flip': {
      msg = Uint8Array.from(msg);
      const n = r.range(1, 3);
      const spots: number[] = [];
      for (let i = 0; i < n; i++) {
        const at = r.range(2, msg.length - 1);
        msg[at] = r.int(256);
        spots.push(at);
      }
      what = `flip bytes ${spots.join(',')}`;
      break;
    }
    case 'pointer': {
      const m = mutatePointer(r, msg);
      msg = m.bytes;
      what = m.what;
      break;
    }
    case 'label-type': {
      msg = Uint8Array.from(msg);
      const at = r.range(12, msg.length - 1);
      msg[at] = r.chance(0.5) ? 0x40 | r.int(64) : 0x80 | r.int(64);
      what = `label type byte at ${at}`;
      break;
    }
    case 'qr-clear':
      msg = Uint8Array.from(msg);
      msg[2] = (msg[2] ?? 0) & 0x7f;
      break;
    case 'rcode':
      msg = Uint8Array.from(msg);
      msg[3] = ((msg[3] ?? 0) & 0xf0) | r.range(1, 5);
      break;
    case 'two-questions':
      msg = Uint8Array.from(msg);
      msg[5] = 2;
      break;
    case 'more-answers-claimed':
      msg = Uint8Array.from(msg);
      msg[6] = r.int(256);
      msg[7] = r.int(256);
      what = `ancount ${((msg[6] ?? 0) << 8) | (msg[7] ?? 0)}`;
      break;
    case 'untrusted':
      rogue = true;
      break;
    case 'no-query':
      queries = [];
      break;
    case 'other-id':
      queries = [packet(e, false, buildQuery(base, (built.id + 1) & 0xffff, built.qname))];
      break;
    case 'other-name':
      queries = [packet(e, false, buildQuery(base, built.id, [...built.qname.slice(1), 'other']))];
      break;
    case 'tcp-short-prefix':
    case 'tcp-long-prefix': {
      framing = 'raw';
      const declared = mutation === 'tcp-long-prefix' ? msg.length + r.range(1, 10) : Math.max(0, msg.length - r.range(0, 10));
      const framed = new Uint8Array(msg.length + 2);
      framed[0] = declared >> 8;
      framed[1] = declared & 0xff;
      framed.set(msg, 2);
      msg = framed;
      what = `${mutation} (declared ${declared} of ${framed.length - 2})`;
      break;
    }
    case 'ip-options':
    case 'none':
      break;
  }
  const response = packet(e, true, msg, { rogue, framing });
  return {
    description: `${e.family === 4 ? 'IPv4' : 'IPv6'} ${e.transport} ${built.qname.join('.')} ${what}`,
    queries: mutation === 'ip-options' ? queries.map(withIpOptions) : queries,
    response: mutation === 'ip-options' ? withIpOptions(response) : response,
  };
}

/** The response of base seed `baseSeed`, cut to `cutAt` bytes (truncation at every byte). */
export function truncatedExchange(baseSeed: number, cutAt: number): Exchange {
  return generateExchange(baseSeed, { mutation: 'truncate', cutAt, baseSeed });
}

/** Length of the DNS message of the base seed (for truncation at every byte). */
export function baseMessageLength(baseSeed: number): number {
  const base = new Rand(prng(baseSeed));
  base.chance(0.7);
  base.chance(0.75);
  base.range(1024, 65535);
  return buildResponse(base).bytes.length;
}

/** Packets of a plain exchange for benchmarks: a query and its response. */
export function exchangePackets(
  spec: { family: IpFamily; transport: 'udp' | 'tcp'; clientPort: number },
  query: Uint8Array,
  response: Uint8Array,
  options: { rogue?: boolean } = {},
): { query: Uint8Array; response: Uint8Array } {
  return { query: packet(spec, false, query), response: packet(spec, true, response, options) };
}
