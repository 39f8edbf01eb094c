// A DNS message over TCP in several segments, on both entry points (BPF_PROG_TEST_RUN): a
// server's answer longer than one segment (or its length prefix written on its own) is put
// together from its segments and parsed when the last missing one passes. Checked against the
// TypeScript reference parser fed the same segments in the same order.
import { parseDomainPattern, ReferenceParser, type Clock, type DomainSet } from '@dnsplane/core';
import { describe, expect, it } from 'vitest';
import type { DnsParserProgram } from '../src/index.js';
import { BIG_EXCHANGE_DNS, bigExchange, tcpSegments, type Exchange } from './big-exchange.js';
import { ethernetFrame, tcRun } from './kernel-harness.js';
import { parsersForEachTest } from './parsers-for-each-test.js';

const dns = BIG_EXCHANGE_DNS;
const sets: DomainSet[] = [{ id: 9, name: 'ds_9', patterns: [parseDomainPattern('*.tcp.example', 'calico')] }];

const LO = 1;
type Entry = 'tc' | 'socket';

const open = parsersForEachTest(dns, sets);

/** One run as at tc ingress of lo (or tc egress of a packet that came in on `ingressIfindex`), or through the socket filter. */
function run(program: DnsParserProgram, entry: Entry, packet: Uint8Array, ingressIfindex = LO): void {
  if (entry === 'tc') tcRun(program, packet, LO, ingressIfindex);
  else program.socketFilter.testRun({ data: ethernetFrame(packet) });
}

const clock: Clock = { now: () => Date.now() };
/** The reference parser's membership and counters after the same packets. */
function reference(packets: readonly Uint8Array[]): { addresses: string[]; counters: Record<string, number> } {
  const parser = new ReferenceParser({ domainSets: sets, dns, clock });
  for (const packet of packets) parser.observe(packet);
  return { addresses: parser.membership.list().map((e) => e.address).sort(), counters: { ...parser.counters } };
}

const learned = (program: DnsParserProgram): string[] => program.membership().map((m) => m.address).sort();
const tcp = (family: 4 | 6, name: string, count = 64): Exchange => bigExchange(family, name, count, { transport: 'tcp' });
/** The answer's data cut as a 1,500-byte link's TCP cuts it (1,460 / 1,440 bytes a segment). */
const atMss = (x: Exchange, family: 4 | 6): Buffer[] => {
  const mss = family === 4 ? 1460 : 1440;
  const length = x.response.length - (family === 4 ? 40 : 60);
  return tcpSegments(x.response, Array.from({ length: Math.ceil(length / mss) }, (_, i) => i * mss));
};

describe('DnsParserProgram: a DNS message over TCP in several segments', () => {
  describe.each(['tc', 'socket'] as const)('%s entry', (entry) => {
    it.each([4, 6] as const)('IPv%s: parses the answer when its last segment passes, as the reference parses it whole', (family) => {
      const program = open();
      const x = tcp(family, `big${family}.tcp.example`);
      const segments = atMss(x, family);
      expect(segments.length).toBeGreaterThanOrEqual(2);
      run(program, entry, x.query);
      for (const segment of segments.slice(0, -1)) run(program, entry, segment);
      expect(program.membership()).toEqual([]); // not before the message is whole
      expect(program.counters().truncated).toBe(0);
      run(program, entry, segments.at(-1)!);
      const whole = reference([x.query, x.response]);
      expect(whole.addresses).toHaveLength(64);
      expect(learned(program)).toEqual(whole.addresses);
      expect(program.counters()).toMatchObject({ queries: 1, parsed: 1, learned: whole.counters['learned'], malformed: 0, truncated: 0 });
    });

    it('takes the segments after the first in any order and repeated, a length prefix on its own, and a query in two segments', () => {
      const program = open();
      const x = tcp(4, 'shuffled-long-name.tcp.example');
      const query = tcpSegments(x.query, [2]); // the prefix, then the message
      const segments = tcpSegments(x.response, [2, 700, 1400, 2100]);
      // after the message's first segment, the others in any order, some twice
      const order = [query[0]!, query[1]!, segments[0]!, segments[3]!, segments[0]!, segments[2]!, segments[3]!, segments[4]!];
      for (const packet of order) run(program, entry, packet);
      expect(program.membership()).toEqual([]);
      run(program, entry, segments[1]!);
      const expected = reference([...order, segments[1]!]);
      expect(expected.addresses).toHaveLength(64);
      expect(learned(program)).toEqual(expected.addresses);
      expect(program.counters()).toMatchObject({ queries: 1, parsed: 1, truncated: 0, malformed: 0 });
    });

    it('counts a message longer than the parser reads (4,096 bytes) as truncated, and an unfinished one a later segment passes', () => {
      const program = open();
      const long = tcp(6, 'a-name-long-enough-to-pass-four-kilobytes.tcp.example'); // 64 × 82 bytes of records
      const [longFirst] = atMss(long, 6);
      run(program, entry, long.query);
      run(program, entry, longFirst!); // its length prefix says more than 4,096: not held
      expect(program.counters().truncated).toBe(1);
      // the first segment of an answer, then the flow's next message: the first is given up
      const x = tcp(4, 'given-up.tcp.example');
      const [first] = atMss(x, 4);
      run(program, entry, x.query);
      run(program, entry, first!);
      const next = Buffer.from(x.response);
      const l4 = 20;
      next.writeUInt32BE(next.readUInt32BE(l4 + 4) + 5000, l4 + 4); // the whole answer again, further on in the stream
      run(program, entry, next);
      expect(program.counters().truncated).toBe(2);
      expect(learned(program)).toEqual(reference([x.query, x.response]).addresses);
      expect(reference([long.query, longFirst!, x.query, first!, next]).counters).toMatchObject({ truncated: 2, parsed: 1 });
    });
  });

  it('a limit: a segment that comes before the first of its message (lost upstream, sent again) is not placed: the message teaches when that segment comes again', () => {
    const program = open();
    const x = tcp(4, 'first-lost.tcp.example');
    const segments = atMss(x, 4);
    const order = [x.query, segments[1]!, segments[0]!]; // the second, then the first sent again
    for (const packet of order) run(program, 'tc', packet);
    expect(program.membership()).toEqual([]);
    expect(reference(order).addresses).toEqual([]);
    // a sender that sends the second again too (no SACK) completes it
    run(program, 'tc', segments[1]!);
    expect(learned(program)).toEqual(reference([...order, segments[1]!]).addresses);
    expect(learned(program)).toHaveLength(64);
  });

  it('tc egress of a forwarded answer: its segments were taken where it came in, none is put together again', () => {
    const program = open();
    const x = tcp(4, 'forwarded.tcp.example');
    run(program, 'tc', x.query);
    for (const segment of atMss(x, 4)) run(program, 'tc', segment, 7); // tc egress, came in on interface 7
    expect(program.membership()).toEqual([]);
    expect(program.counters()).toMatchObject({ parsed: 0, learned: 0 });
    // the same answer at the ingress it came in on teaches
    for (const segment of atMss(x, 4)) run(program, 'tc', segment);
    expect(learned(program)).toHaveLength(64);
  });

  it('an answer to no recorded query, in segments, teaches nothing', () => {
    const program = open();
    const x = tcp(4, 'unasked.tcp.example');
    for (const segment of atMss(x, 4)) run(program, 'tc', segment);
    expect(program.membership()).toEqual([]);
    expect(program.counters()).toMatchObject({ unmatched_query: 1, learned: 0 });
  });
});
