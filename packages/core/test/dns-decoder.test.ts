import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { decodeDnsMessage, type DecodedDnsMessage } from '../src/dns/decoder.js';
import { isWireProblem, readName, type NameCache } from '../src/dns/wire.js';
import { learnFromResponse } from '../src/dns/learn.js';
import type { DnsSettings, DomainSet } from '../src/desired-state.js';
import { parseDomainPattern } from '../src/domain-pattern.js';

type Answer = dnsPacket.Answer;

function response(name: string, answers: Answer[], extra: Partial<dnsPacket.Packet> = {}): Uint8Array {
  return dnsPacket.encode({
    type: 'response',
    id: 0x1234,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'A', name, class: 'IN' }],
    answers,
    ...extra,
  });
}

function ok(bytes: Uint8Array): DecodedDnsMessage {
  const result = decodeDnsMessage(bytes);
  if (!result.ok) throw new Error(`expected a decoded message, got: ${result.reason}`);
  return result;
}

/** Header (id 1, QR, one question) + question `\x01a\x00` A IN, then `rest`. */
function crafted(ancount: number, rest: number[]): Uint8Array {
  return Uint8Array.from([0, 1, 0x81, 0x80, 0, 1, 0, ancount, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1, ...rest]);
}
/** Fixed record part: type A, class IN, ttl 60, rdlength 4, then the address. */
const A_RECORD = [0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 9];

describe('decodeDnsMessage', () => {
  it('decodes header, flags, question and a plain A answer', () => {
    const r = ok(response('www.example.com', [{ type: 'A', name: 'www.example.com', ttl: 300, data: '198.18.0.1' }]));
    expect(r.id).toBe(0x1234);
    expect(r.flags).toMatchObject({ qr: true, tc: false, opcode: 0, rcode: 0, rd: true, ra: true });
    expect(r.question).toMatchObject({ name: 'www.example.com', type: 1, class: 1 });
    expect(r.chain.map((c) => c.name)).toEqual(['www.example.com']);
    expect(r.addresses).toEqual([{ family: 4, address: '198.18.0.1', ttl: 300, owner: 'www.example.com' }]);
    expect(r.truncated).toBe(false);
  });

  it('follows a CNAME chain in packet order, case-insensitively, and ignores unrelated owners', () => {
    const r = ok(
      response('WwW.ExAmple.COM', [
        { type: 'CNAME', name: 'www.example.com', ttl: 10, data: 'Edge.CDN.example.net' },
        { type: 'A', name: 'unrelated.example.org', ttl: 10, data: '198.18.9.9' },
        { type: 'CNAME', name: 'edge.cdn.example.net', ttl: 10, data: 'pop1.cdn.example.net' },
        { type: 'A', name: 'POP1.cdn.example.net', ttl: 20, data: '198.18.0.2' },
        { type: 'AAAA', name: 'pop1.cdn.example.net', ttl: 30, data: 'fd00::2' },
      ]),
    );
    expect(r.chain.map((c) => c.name)).toEqual(['www.example.com', 'edge.cdn.example.net', 'pop1.cdn.example.net']);
    expect(r.addresses).toEqual([
      { family: 4, address: '198.18.0.2', ttl: 20, owner: 'pop1.cdn.example.net' },
      { family: 6, address: 'fd00::2', ttl: 30, owner: 'pop1.cdn.example.net' },
    ]);
  });

  it('learns nothing from an address that comes before the CNAME leading to it (single pass)', () => {
    const r = ok(
      response('a.example', [
        { type: 'A', name: 'b.example', ttl: 10, data: '198.18.0.3' },
        { type: 'CNAME', name: 'a.example', ttl: 10, data: 'b.example' },
      ]),
    );
    expect(r.addresses).toEqual([]);
    expect(r.chain.map((c) => c.name)).toEqual(['a.example', 'b.example']);
  });

  it('ignores authority and additional records, and tolerates EDNS OPT', () => {
    const r = ok(
      response('a.example', [{ type: 'A', name: 'a.example', ttl: 10, data: '198.18.0.4' }], {
        authorities: [{ type: 'A', name: 'a.example', ttl: 10, data: '198.18.0.5' }],
        additionals: [
          { type: 'A', name: 'a.example', ttl: 10, data: '198.18.0.6' },
          { type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] },
        ],
      }),
    );
    expect(r.addresses.map((a) => a.address)).toEqual(['198.18.0.4']);
  });

  it('holds at most 8 names in the chain', () => {
    const answers: Answer[] = [];
    for (let i = 0; i < 10; i++) answers.push({ type: 'CNAME', name: `n${i}.example`, ttl: 1, data: `n${i + 1}.example` });
    answers.push({ type: 'A', name: 'n7.example', ttl: 1, data: '198.18.0.7' });
    answers.push({ type: 'A', name: 'n8.example', ttl: 1, data: '198.18.0.8' });
    const r = ok(response('n0.example', answers));
    expect(r.chain).toHaveLength(8);
    expect(r.addresses.map((a) => a.address)).toEqual(['198.18.0.7']);
  });

  it('walks at most 64 answers', () => {
    const answers: Answer[] = [];
    for (let i = 0; i < 70; i++) answers.push({ type: 'A', name: 'many.example', ttl: 1, data: `198.18.1.${i}` });
    const r = ok(response('many.example', answers));
    expect(r.answersWalked).toBe(64);
    expect(r.addresses).toHaveLength(64);
    expect(r.truncated).toBe(false);
  });

  it('follows a backwards compression pointer to the question', () => {
    const r = ok(crafted(1, [0xc0, 12, ...A_RECORD]));
    expect(r.addresses).toEqual([{ family: 4, address: '198.18.0.9', ttl: 60, owner: 'a' }]);
  });

  it('rejects a forward pointer, a self pointer and a pointer loop as malformed', () => {
    expect(decodeDnsMessage(crafted(1, [0xc0, 21, ...A_RECORD]))).toMatchObject({ ok: false, error: 'malformed' });
    expect(decodeDnsMessage(crafted(1, [0xc0, 19, ...A_RECORD]))).toMatchObject({ ok: false });
    expect(decodeDnsMessage(crafted(1, [0xc0, 200, ...A_RECORD]))).toMatchObject({ ok: false });
  });

  it('follows 16 pointer hops and rejects 17', () => {
    const withHops = (hops: number): Uint8Array => {
      // Record 0: owner "\x01b" + pointer chain embedded as a type-99 record's rdata (not walked
      // as names), then record 1 whose owner points to the last pointer in that rdata.
      const fillers: number[] = [0xc0, 12];
      const rdataStart = 19 + 3 + 10;
      for (let i = 1; i < hops - 1; i++) fillers.push(0xc0, rdataStart + (i - 1) * 2);
      const record0 = [1, 0x62, 0, 0, 99, 0, 1, 0, 0, 0, 1, 0, fillers.length, ...fillers];
      const lastPointer = rdataStart + fillers.length - 2;
      const bytes = crafted(2, [...record0, 0xc0, lastPointer, ...A_RECORD]);
      return bytes;
    };
    const ok16 = decodeDnsMessage(withHops(16));
    expect(ok16).toMatchObject({ ok: true });
    expect((ok16 as DecodedDnsMessage).addresses.map((a) => a.address)).toEqual(['198.18.0.9']);
    expect(decodeDnsMessage(withHops(17))).toMatchObject({ ok: false, error: 'malformed' });
  });

  it('rejects bad label types, long names and wrong A/AAAA lengths as malformed', () => {
    expect(decodeDnsMessage(crafted(1, [0x40, ...A_RECORD]))).toMatchObject({ ok: false });
    expect(decodeDnsMessage(crafted(1, [0x80, ...A_RECORD]))).toMatchObject({ ok: false });
    const longName: number[] = [];
    for (let i = 0; i < 5; i++) longName.push(50, ...new Array<number>(50).fill(0x61));
    longName.push(3, 0x61, 0x62, 0x63, 0); // 5*51 + 4 + 1 = 260 > 255
    expect(decodeDnsMessage(crafted(1, [...longName, ...A_RECORD]))).toMatchObject({ ok: false, reason: expect.stringContaining('255') });
    expect(decodeDnsMessage(crafted(1, [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 5, 1, 2, 3, 4, 5]))).toMatchObject({ ok: false });
    expect(decodeDnsMessage(crafted(1, [0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]))).toMatchObject({ ok: false });
  });

  it('accepts a name of exactly 255 wire bytes', () => {
    const name: number[] = [];
    for (let i = 0; i < 4; i++) name.push(62, ...new Array<number>(62).fill(0x61));
    name.push(1, 0x62, 0); // 4*63 + 2 + 1 = 255
    const bytes = Uint8Array.from([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, ...name, 0, 1, 0, 1]);
    expect(decodeDnsMessage(bytes)).toMatchObject({ ok: true });
  });

  it('is truncated (not malformed) when counts claim more answers than present', () => {
    const bytes = response('a.example', [{ type: 'A', name: 'a.example', ttl: 10, data: '198.18.0.10' }]);
    bytes[7] = 3;
    const r = ok(bytes);
    expect(r.truncated).toBe(true);
    expect(r.addresses.map((a) => a.address)).toEqual(['198.18.0.10']);
  });

  it('classifies a cut at every byte: header/question → malformed, answers → truncated with complete records', () => {
    const bytes = response('cut.example', [
      { type: 'A', name: 'cut.example', ttl: 10, data: '198.18.0.11' },
      { type: 'AAAA', name: 'cut.example', ttl: 10, data: 'fd00::11' },
    ]);
    const questionEnd = 12 + 13 + 4;
    const firstEnd = questionEnd + 13 + 10 + 4;
    for (let cut = 0; cut < bytes.length; cut++) {
      const r = decodeDnsMessage(bytes.subarray(0, cut));
      if (cut < questionEnd) {
        expect(r.ok, `cut at ${cut}`).toBe(false);
      } else {
        expect(r.ok, `cut at ${cut}`).toBe(true);
        const d = r as DecodedDnsMessage;
        expect(d.truncated).toBe(true);
        expect(d.addresses.length).toBe(cut >= firstEnd ? 1 : 0);
      }
    }
  });

  it('reads nothing past the header without exactly one question', () => {
    const bytes = response('a.example', [{ type: 'A', name: 'a.example', ttl: 10, data: '198.18.0.12' }]);
    bytes[5] = 2;
    const r = ok(bytes);
    expect(r.question).toBeUndefined();
    expect(r.addresses).toEqual([]);
  });

  it('never throws on random or mutated input', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const base = response('fuzz.example', [
      { type: 'CNAME', name: 'fuzz.example', ttl: 1, data: 'x.fuzz.example' },
      { type: 'A', name: 'x.fuzz.example', ttl: 1, data: '198.18.0.13' },
    ]);
    for (let i = 0; i < 3000; i++) {
      const bytes = i % 2 === 0 ? Uint8Array.from(base) : new Uint8Array(rand() % 80);
      for (let k = 0; k < 1 + (rand() % 4); k++) bytes[rand() % Math.max(1, bytes.length)] = rand() & 0xff;
      expect(() => decodeDnsMessage(bytes)).not.toThrow();
    }
  });
});

describe('readName with a cache', () => {
  it('gives exactly what reading the bytes again gives, on mutated compressed messages', () => {
    let seed = 777;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    // Compressed names everywhere: owners pointing at the question and at each other.
    const base = [0, 1, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0, 3, 0x77, 0x77, 0x77, 7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0, 0, 1, 0, 1];
    base.push(0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 1, 0, 6, 3, 0x63, 0x64, 0x6e, 0xc0, 16);
    base.push(0xc0, 45, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 198, 18, 0, 1);
    base.push(1, 0x61, 0xc0, 59, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 198, 18, 0, 2);
    let checked = 0;
    for (let i = 0; i < 400; i++) {
      const msg = Uint8Array.from(base);
      for (let k = 0; k < rand() % 4; k++) {
        const at = 12 + (rand() % (msg.length - 12));
        msg[at] = rand() % 3 === 0 ? 0xc0 | (rand() & 1) : rand() & 0xff;
      }
      const cache: NameCache = new Map();
      for (let off = 12; off < msg.length; off++) {
        const plain = readName(msg, off);
        const cached = readName(msg, off, cache);
        if (isWireProblem(plain) || isWireProblem(cached)) {
          expect(isWireProblem(cached) && cached.kind).toBe(isWireProblem(plain) && plain.kind);
        } else {
          expect(cached).toEqual(plain);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(10_000);
  });
});

describe('learnFromResponse', () => {
  const dns: DnsSettings = { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 2 };
  const sets: DomainSet[] = [
    { id: 7, name: 'ds_7', patterns: [parseDomainPattern('*.cdn.example.net', 'calico')] },
    { id: 3, name: 'ds_3', patterns: [parseDomainPattern('www.example.com', 'calico')] },
    { id: 9, name: 'ds_9', patterns: [parseDomainPattern('other.example', 'calico')] },
  ];
  const bytes = response('www.example.com', [
    { type: 'CNAME', name: 'www.example.com', ttl: 5, data: 'pop.cdn.example.net' },
    { type: 'A', name: 'pop.cdn.example.net', ttl: 5, data: '198.18.0.20' },
    { type: 'A', name: 'pop.cdn.example.net', ttl: 100, data: '198.18.0.21' },
    { type: 'A', name: 'pop.cdn.example.net', ttl: 100, data: '198.18.0.22' },
  ]);

  it('credits the first maxAddressesPerName addresses to every matching set, with expiries', () => {
    const entries = learnFromResponse(decodeDnsMessage(bytes), sets, dns, 1_000_000);
    expect(entries).toEqual([
      { setId: 3, family: 4, address: '198.18.0.20', expiresAt: 1_000_000 + 40_000, name: 'www.example.com' },
      { setId: 7, family: 4, address: '198.18.0.20', expiresAt: 1_000_000 + 40_000, name: 'www.example.com' },
      { setId: 3, family: 4, address: '198.18.0.21', expiresAt: 1_000_000 + 110_000, name: 'www.example.com' },
      { setId: 7, family: 4, address: '198.18.0.21', expiresAt: 1_000_000 + 110_000, name: 'www.example.com' },
    ]);
  });

  it('teaches nothing for a non-zero rcode, a query, or malformed input', () => {
    const nx = Uint8Array.from(bytes);
    nx[3] = (nx[3] ?? 0) | 3;
    expect(learnFromResponse(decodeDnsMessage(nx), sets, dns, 0)).toEqual([]);
    const query = Uint8Array.from(bytes);
    query[2] = (query[2] ?? 0) & 0x7f;
    expect(learnFromResponse(decodeDnsMessage(query), sets, dns, 0)).toEqual([]);
    expect(learnFromResponse(decodeDnsMessage(bytes.subarray(0, 20)), sets, dns, 0)).toEqual([]);
  });
});

/** Addresses each crafted, decodable fixture must yield (see test/fixtures/regenerate.ts). */
const CRAFTED_ADDRESSES: Readonly<Record<string, readonly string[]>> = {
  'crafted-compressed-a.bin': ['198.18.30.1'],
  'crafted-compressed-cname-chain.bin': ['198.18.30.2'],
  'crafted-pointer-into-name.bin': [],
  'crafted-pointer-16-hops.bin': ['198.18.30.7'],
  'crafted-name-255.bin': [],
  'crafted-cut-mid-record.bin': ['198.18.30.12'],
  'crafted-count-claims-more.bin': ['198.18.30.14'],
  'crafted-two-questions.bin': [],
  'crafted-nxdomain.bin': [],
  'crafted-query.bin': [],
  'crafted-uppercase-owner.bin': ['198.18.30.15'],
  'crafted-authority-only.bin': [],
};

describe('fixtures', () => {
  const dir = fileURLToPath(new URL('../../../test/fixtures/dns/', import.meta.url));
  let manifest: { fixtures: { file: string; expect: 'ok' | 'truncated' | 'malformed'; source: string }[] } = { fixtures: [] };
  try {
    manifest = JSON.parse(readFileSync(`${dir}manifest.json`, 'utf8')) as typeof manifest;
  } catch {
    // No fixtures yet: the test below fails.
  }

  it('has a manifest entry for every .bin file', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.bin')).sort();
    expect(files.length).toBeGreaterThan(10);
    expect(manifest.fixtures.map((f) => f.file).sort()).toEqual(files);
  });

  it.each(manifest.fixtures.map((f) => [f.file, f] as const))('%s decodes as expected', (_file, fixture) => {
    const bytes = new Uint8Array(readFileSync(`${dir}${fixture.file}`));
    const r = decodeDnsMessage(bytes);
    if (fixture.expect === 'malformed') {
      expect(r.ok).toBe(false);
      return;
    }
    expect(r.ok).toBe(true);
    const d = r as DecodedDnsMessage;
    expect(d.truncated).toBe(fixture.expect === 'truncated');
    const expectedCrafted = CRAFTED_ADDRESSES[fixture.file];
    if (expectedCrafted !== undefined) expect(d.addresses.map((a) => a.address)).toEqual(expectedCrafted);
    if (fixture.source !== 'crafted' && fixture.expect === 'ok') {
      // Real server output: dns-packet (lenient) must agree on the addresses reached via the chain.
      const p = dnsPacket.decode(Buffer.from(bytes));
      const chain = new Set([(p.questions?.[0]?.name ?? '').toLowerCase()]);
      const expected: string[] = [];
      for (const a of p.answers ?? []) {
        const owner = a.name.toLowerCase();
        if (!chain.has(owner)) continue;
        if (a.type === 'CNAME') chain.add(String(a.data).toLowerCase());
        if (a.type === 'A' || a.type === 'AAAA') expected.push(String(a.data));
      }
      expect(d.addresses.map((a) => a.address)).toEqual(expected.slice(0, 64));
    }
  });
});

describe('address text', () => {
  it.each([
    ['fd00:0:0:0:0:0:0:1', 'fd00::1'],
    ['FD00::', 'fd00::'],
    ['::', '::'],
    ['fd00:0:1:0:0:1:0:0', 'fd00:0:1::1:0:0'],
    ['fd00:1:0:1:0:1:0:1', 'fd00:1:0:1:0:1:0:1'],
    ['0:0:1:0:0:0:0:1', '0:0:1::1'],
    ['::ffff:198.18.0.1', '::ffff:c612:1'],
    ['198.18.0.1', '198.18.0.1'],
  ])('%s → %s', async (input, canonical) => {
    const { canonicalAddress } = await import('../src/net-address.js');
    expect(canonicalAddress(input)).toBe(canonical);
  });
});
