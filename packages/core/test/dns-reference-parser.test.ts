import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { beforeEach, describe, expect, it } from 'vitest';
import type { DnsSettings, DomainSet, IpFamily } from '../src/desired-state.js';
import { parseDomainPattern } from '../src/domain-pattern.js';
import { buildDnsPacket } from '../src/dns/packet-builder.js';
import { QUERY_LIFETIME_MS, ReferenceParser } from '../src/dns/reference-parser.js';

const SERVER4 = '198.18.0.53';
const SERVER6 = 'fd00::53';
const CLIENT4 = '198.18.1.10';
const CLIENT6 = 'fd00::1:10';

const dns: DnsSettings = {
  trustedServers: [
    { family: 4, address: SERVER4, port: 53 },
    { family: 6, address: 'FD00:0:0::53', port: 53 },
  ],
  minTTL: 30,
  extraTTL: 10,
  maxAddressesPerName: 3,
};
const domainSets: DomainSet[] = [
  { id: 1, name: 'ds_1', patterns: [parseDomainPattern('www.example.com', 'calico')] },
  { id: 2, name: 'ds_2', patterns: [parseDomainPattern('*.cdn.example.net', 'calico')] },
];

class TestClock {
  ms = 1_700_000_000_000;
  now(): number {
    return this.ms;
  }
}

interface Exchange {
  family?: IpFamily;
  transport?: 'udp' | 'tcp';
  id?: number;
  name?: string;
  clientPort?: number;
}

function query(x: Exchange = {}): Uint8Array {
  const family = x.family ?? 4;
  return buildDnsPacket({
    family,
    src: family === 4 ? CLIENT4 : CLIENT6,
    dst: family === 4 ? SERVER4 : SERVER6,
    sport: x.clientPort ?? 40000,
    dport: 53,
    transport: x.transport ?? 'udp',
    payload: dnsPacket.encode({ type: 'query', id: x.id ?? 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: x.name ?? 'www.example.com' }] }),
  });
}

function answerPayload(x: Exchange, answers: dnsPacket.Answer[], patch?: (b: Uint8Array) => void): Uint8Array {
  const payload = Uint8Array.from(
    dnsPacket.encode({ type: 'response', id: x.id ?? 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: x.name ?? 'www.example.com' }], answers }),
  );
  patch?.(payload);
  return payload;
}

function response(x: Exchange, answers: dnsPacket.Answer[], opts: { patch?: (b: Uint8Array) => void; src?: string; sport?: number } = {}): Uint8Array {
  const family = x.family ?? 4;
  return buildDnsPacket({
    family,
    src: opts.src ?? (family === 4 ? SERVER4 : SERVER6),
    dst: family === 4 ? CLIENT4 : CLIENT6,
    sport: opts.sport ?? 53,
    dport: x.clientPort ?? 40000,
    transport: x.transport ?? 'udp',
    payload: answerPayload(x, answers, opts.patch),
  });
}

const CHAIN: dnsPacket.Answer[] = [
  { type: 'CNAME', name: 'www.example.com', ttl: 5, data: 'pop.cdn.example.net' },
  { type: 'A', name: 'pop.cdn.example.net', ttl: 5, data: '198.18.2.1' },
  { type: 'AAAA', name: 'pop.cdn.example.net', ttl: 300, data: 'fd00::2:1' },
];

describe('ReferenceParser', () => {
  let clock: TestClock;
  let parser: ReferenceParser;
  beforeEach(() => {
    clock = new TestClock();
    parser = new ReferenceParser({ domainSets, dns, clock });
  });

  it('learns from a response to a remembered query: every chain address into every matching set', () => {
    expect(parser.observe(query()).outcome).toBe('query');
    const out = parser.observe(response({}, CHAIN));
    expect(out.outcome).toBe('parsed');
    const t = clock.ms;
    expect(out.writes).toEqual([
      { setId: 1, family: 4, address: '198.18.2.1', expiresAt: t + 40_000 },
      { setId: 2, family: 4, address: '198.18.2.1', expiresAt: t + 40_000 },
      { setId: 1, family: 6, address: 'fd00::2:1', expiresAt: t + 310_000 },
      { setId: 2, family: 6, address: 'fd00::2:1', expiresAt: t + 310_000 },
    ]);
    expect(parser.membership.lookup(2, '198.18.2.1')).toBe(t + 40_000);
    expect(parser.counters).toMatchObject({ queries: 1, parsed: 1, learned: 4 });
  });

  it('matches the query case-insensitively (0x20 randomisation) and does not consume it', () => {
    parser.observe(query({ name: 'wWw.ExAmPlE.cOm' }));
    expect(parser.observe(response({ name: 'WWW.example.COM' }, CHAIN)).outcome).toBe('parsed');
    expect(parser.observe(response({ name: 'www.example.com' }, CHAIN)).outcome).toBe('parsed');
  });

  it('teaches nothing without a matching query: other id, other name, other port, expired', () => {
    parser.observe(query());
    expect(parser.observe(response({ id: 8 }, CHAIN)).outcome).toBe('unmatched_query');
    expect(parser.observe(response({ name: 'other.example.com' }, CHAIN)).outcome).toBe('unmatched_query');
    expect(parser.observe(response({ clientPort: 40001 }, CHAIN)).outcome).toBe('unmatched_query');
    clock.ms += QUERY_LIFETIME_MS - 1;
    expect(parser.observe(response({}, CHAIN)).outcome).toBe('parsed');
    clock.ms += 1;
    expect(parser.observe(response({}, CHAIN)).outcome).toBe('unmatched_query');
    expect(parser.counters.unmatched_query).toBe(4);
  });

  it('counts untrusted sources, queries on the response path, rejected and malformed responses', () => {
    parser.observe(query());
    expect(parser.observe(response({}, CHAIN, { src: '198.18.0.54' })).outcome).toBe('untrusted');
    expect(parser.observe(response({}, CHAIN, { sport: 5353 })).outcome).toBe('ignored');
    expect(parser.observe(response({}, CHAIN, { patch: (b) => (b[2] = (b[2] ?? 0) & 0x7f) })).outcome).toBe('not_response');
    expect(parser.observe(response({}, CHAIN, { patch: (b) => (b[3] = 3) })).outcome).toBe('rejected');
    expect(parser.observe(response({}, CHAIN, { patch: (b) => (b[5] = 2) })).outcome).toBe('rejected');
    // A with rdlength 5: the whole packet is malformed and teaches nothing.
    const bad = parser.observe(
      response({}, CHAIN, {
        patch: (b) => {
          b[b.length - 16 - 1] = 17; // AAAA rdlength low byte → 17
        },
      }),
    );
    expect(bad.outcome).toBe('malformed');
    expect(bad.writes).toEqual([]);
    expect(parser.membership.list()).toEqual([]);
    expect(parser.counters).toMatchObject({ untrusted: 1, not_response: 1, rejected: 2, malformed: 1, learned: 0 });
  });

  it('credits the complete records before a cut (truncated)', () => {
    parser.observe(query());
    const out = parser.observe(response({}, CHAIN, { patch: (b) => (b[7] = 5) }));
    expect(out.outcome).toBe('truncated');
    expect(out.writes.map((w) => w.address)).toEqual(['198.18.2.1', '198.18.2.1', 'fd00::2:1', 'fd00::2:1']);
  });

  it('respects maxAddressesPerName and counts the rest over_limit', () => {
    parser.observe(query());
    const answers: dnsPacket.Answer[] = [];
    for (let i = 1; i <= 5; i++) answers.push({ type: 'A', name: 'www.example.com', ttl: 60, data: `198.18.3.${i}` });
    const out = parser.observe(response({}, answers));
    expect(out.writes.map((w) => w.address)).toEqual(['198.18.3.1', '198.18.3.2', '198.18.3.3']);
    expect(out.overLimit).toBe(2);
    expect(parser.counters.over_limit).toBe(2);
  });

  it('keeps the later expiry on refresh, and treats expiry ≤ now as absent', () => {
    parser.observe(query());
    parser.observe(response({}, [{ type: 'A', name: 'www.example.com', ttl: 100, data: '198.18.4.1' }]));
    const first = clock.ms + 110_000;
    clock.ms += 1000;
    parser.observe(query());
    const again = parser.observe(response({}, [{ type: 'A', name: 'www.example.com', ttl: 1, data: '198.18.4.1' }]));
    // The write reports the expiry the entry holds afterwards (the later one), like the ring event.
    expect(again.writes[0]?.expiresAt).toBe(first);
    expect(parser.membership.lookup(1, '198.18.4.1')).toBe(first);
    expect(parser.membership.lookup(1, '198.18.4.1', first - 1)).toBe(first);
    expect(parser.membership.lookup(1, '198.18.4.1', first)).toBeUndefined();
  });

  it('looks at the first 4096 message bytes only, as the kernel copies them', () => {
    const answers: dnsPacket.Answer[] = [];
    for (let i = 0; i < 40; i++) answers.push({ type: 'TXT', name: 'filler.example', ttl: 1, data: 'x'.repeat(200) });
    answers.push({ type: 'A', name: 'www.example.com', ttl: 60, data: '198.18.5.1' });
    const big = response({ transport: 'tcp' }, answers);
    parser.observe(query());
    expect(parser.observe(big).outcome).toBe('truncated');
    const unbounded = new ReferenceParser({ domainSets, dns, clock, maxMessageBytes: 65535 });
    unbounded.observe(query());
    const out = unbounded.observe(big);
    expect(out.outcome).toBe('parsed');
    expect(out.writes.map((w) => w.address)).toEqual(['198.18.5.1']);
  });

  it('handles TCP framing, IPv6, and UDP query answered over TCP', () => {
    parser.observe(query({ family: 6, transport: 'tcp', id: 99 }));
    expect(parser.observe(response({ family: 6, transport: 'tcp', id: 99 }, CHAIN)).outcome).toBe('parsed');
    parser.observe(query({ id: 100 }));
    expect(parser.observe(response({ transport: 'tcp', id: 100 }, CHAIN)).outcome).toBe('parsed');
    // A TCP segment holding the first part of a message is held until the rest came (as the
    // kernel's tcp segment assembly does); one that declares more than 4,096 bytes is truncated;
    // one without payload is not DNS.
    const whole = answerPayload({ id: 101 }, CHAIN);
    parser.observe(query({ transport: 'tcp', id: 101 }));
    const segment = (seq: number, payload: Uint8Array): Uint8Array => {
      const packet = buildDnsPacket({ family: 4, src: SERVER4, dst: CLIENT4, sport: 53, dport: 40000, transport: 'tcp', tcpFraming: 'raw', payload });
      new DataView(packet.buffer, packet.byteOffset).setUint32(24, seq);
      return packet;
    };
    const first = parser.observe(segment(1, Uint8Array.from([0, whole.length, ...whole.subarray(0, 20)])));
    expect(first.outcome).toBe('ignored');
    expect(parser.observe(segment(23, whole.subarray(20))).outcome).toBe('parsed');
    const tooLong = buildDnsPacket({ family: 4, src: SERVER4, dst: CLIENT4, sport: 53, dport: 40001, transport: 'tcp', tcpFraming: 'raw', payload: Uint8Array.from([0x20, 0, ...whole]) });
    expect(parser.observe(tooLong).outcome).toBe('truncated');
    const empty = buildDnsPacket({ family: 4, src: SERVER4, dst: CLIENT4, sport: 53, dport: 40000, transport: 'tcp', tcpFraming: 'raw', payload: new Uint8Array(0) });
    expect(parser.observe(empty).outcome).toBe('ignored');
  });

  it('ignores fragments, other protocols and unrelated traffic', () => {
    const q = query();
    const fragment = Uint8Array.from(q);
    fragment[6] = 0x20; // more fragments
    expect(parser.observe(fragment).outcome).toBe('ignored');
    const icmp = Uint8Array.from(q);
    icmp[9] = 1;
    expect(parser.observe(icmp).outcome).toBe('ignored');
    expect(parser.observe(Uint8Array.from([0x45, 0, 0])).outcome).toBe('ignored');
    expect(parser.observe(new Uint8Array(0)).outcome).toBe('ignored');
    expect(parser.counters.queries).toBe(0);
  });

  it('is deterministic and fast enough for differential runs (10,000 packets)', () => {
    const packets: Uint8Array[] = [];
    for (let i = 0; i < 5000; i++) {
      packets.push(query({ id: i, clientPort: 30000 + (i % 1000) }), response({ id: i, clientPort: 30000 + (i % 1000) }, CHAIN));
    }
    const start = performance.now();
    for (const p of packets) parser.observe(p);
    const elapsed = performance.now() - start;
    expect(parser.counters.parsed).toBe(5000);
    expect(elapsed).toBeLessThan(5000);
  });
});

describe('ReferenceParser on the real-server fixtures', () => {
  const dir = fileURLToPath(new URL('../../../test/fixtures/dns/', import.meta.url));
  const manifest = JSON.parse(readFileSync(`${dir}manifest.json`, 'utf8')) as {
    fixtures: { file: string; source: string; transport: 'udp' | 'tcp' | 'none' }[];
  };
  const real = manifest.fixtures.filter((f) => f.source !== 'crafted');
  const sets: DomainSet[] = [{ id: 42, name: 'ds_42', patterns: [parseDomainPattern('*.fx.test', 'calico')] }];
  const settings: DnsSettings = { ...dns, maxAddressesPerName: 256 };

  it.each(real.map((f) => [f.file, f] as const))('%s: the query is remembered and the answer learned', (_file, fixture) => {
    const clock = new TestClock();
    const parser = new ReferenceParser({ domainSets: sets, dns: settings, clock });
    const bytes = new Uint8Array(readFileSync(`${dir}${fixture.file}`));
    const decoded = dnsPacket.decode(Buffer.from(bytes));
    const transport: 'udp' | 'tcp' = fixture.transport === 'tcp' ? 'tcp' : 'udp';
    const q = dnsPacket.encode({ type: 'query', id: decoded.id ?? 0, questions: decoded.questions ?? [] });
    const common = { family: 4 as const, transport, payload: q };
    expect(parser.observe(buildDnsPacket({ ...common, src: CLIENT4, dst: SERVER4, sport: 41000, dport: 53 })).outcome).toBe('query');
    const out = parser.observe(buildDnsPacket({ ...common, payload: bytes, src: SERVER4, dst: CLIENT4, sport: 53, dport: 41000 }));
    if ((decoded as { rcode?: string }).rcode !== 'NOERROR') {
      expect(out.outcome).toBe('rejected');
      return;
    }
    expect(out.outcome).toBe('parsed');
    const expected = (decoded.answers ?? []).flatMap((a) => (a.type === 'A' || a.type === 'AAAA' ? [a.data] : []));
    // Every real fixture's addresses are owned by chain names, so all are learned.
    expect(out.writes.map((w) => w.address)).toEqual(expected);
    for (const w of out.writes) expect(w.expiresAt).toBeGreaterThanOrEqual(clock.ms + 40_000);
  });
});
