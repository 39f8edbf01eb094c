// A UDP answer in IP fragments, on the tc entry (BPF_PROG_TEST_RUN): tc runs before the kernel
// reassembles, so the parser puts the datagram together itself and parses it when the last
// missing fragment passes. Checked against the TypeScript reference parser on the whole
// datagram: the same membership, the same counters.
import { parseDomainPattern, ReferenceParser, type Clock, type DomainSet } from '@dnsplane/core';
import { describe, expect, it } from 'vitest';
import type { DnsParserProgram } from '../src/index.js';
import { BIG_EXCHANGE_DNS, bigExchange, type Exchange } from './big-exchange.js';
import { ROGUE4 } from './dns-generator.js';
import { ethernetFrame, tcRun as tcRunOn } from './kernel-harness.js';
import { parsersForEachTest } from './parsers-for-each-test.js';

const dns = BIG_EXCHANGE_DNS;
const sets: DomainSet[] = [{ id: 7, name: 'ds_7', patterns: [parseDomainPattern('*.frag.example', 'calico')] }];

const LO = 1;
const BIT = 0x04000000;

/** The packet's fragments for a link of `mtu` bytes, as the sending kernel cuts them (IPv6: a fragment header after the fixed one). */
function fragments(packet: Uint8Array, mtu = 1500): Buffer[] {
  const p = Buffer.from(packet);
  const out: Buffer[] = [];
  if (p[0]! >> 4 === 4) {
    const ihl = (p[0]! & 0xf) * 4;
    const payload = p.subarray(ihl);
    const step = Math.floor((mtu - ihl) / 8) * 8;
    for (let at = 0; at < payload.length; at += step) {
      const chunk = payload.subarray(at, Math.min(payload.length, at + step));
      const header = Buffer.from(p.subarray(0, ihl));
      header.writeUInt16BE(ihl + chunk.length, 2);
      header.writeUInt16BE(0x3344, 4); // identification
      header.writeUInt16BE((at + step < payload.length ? 0x2000 : 0) | (at / 8), 6);
      out.push(Buffer.concat([header, chunk]));
    }
    return out;
  }
  const payload = p.subarray(40);
  const step = Math.floor((mtu - 48) / 8) * 8;
  for (let at = 0; at < payload.length; at += step) {
    const chunk = payload.subarray(at, Math.min(payload.length, at + step));
    const header = Buffer.from(p.subarray(0, 40));
    header.writeUInt16BE(8 + chunk.length, 4);
    header[6] = 44;
    const fragment = Buffer.alloc(8);
    fragment[0] = p[6]!; // UDP
    fragment.writeUInt16BE(at | (at + step < payload.length ? 1 : 0), 2);
    fragment.writeUInt32BE(0x11223344, 4);
    out.push(Buffer.concat([header, fragment, chunk]));
  }
  return out;
}

/** One tc test run as at tc ingress of lo (by default); returns the packet's mark after it. */
const tcRun = (program: DnsParserProgram, packet: Uint8Array, ifindex = LO, ingressIfindex = LO): number => tcRunOn(program, packet, ifindex, ingressIfindex);

const clock: Clock = { now: () => Date.now() };
/** The reference parser's membership and counters for the whole datagram. */
function reference(x: Exchange): { addresses: string[]; parsed: number; learned: number } {
  const parser = new ReferenceParser({ domainSets: sets, dns, clock });
  parser.observe(x.query);
  parser.observe(x.response);
  return { addresses: parser.membership.list().map((e) => e.address).sort(), parsed: parser.counters.parsed, learned: parser.counters.learned };
}

const open = parsersForEachTest(dns, sets);

const learnedAddresses = (program: DnsParserProgram): string[] => program.membership().map((m) => m.address).sort();

describe('DnsParserProgram: a UDP answer in IP fragments (tc)', () => {
  it.each([4, 6] as const)('IPv%s: parses the datagram when its last fragment passes, as the reference parses it whole', (family) => {
    const program = open();
    const x = bigExchange(family, `big${family}.frag.example`, 64);
    const parts = fragments(x.response);
    expect(parts.length).toBeGreaterThanOrEqual(2);
    tcRun(program, x.query);
    for (const part of parts.slice(0, -1)) tcRun(program, part);
    expect(program.membership()).toEqual([]); // not before the datagram is whole
    tcRun(program, parts.at(-1)!);
    const expected = reference(x);
    expect(expected.addresses).toHaveLength(64);
    expect(learnedAddresses(program)).toEqual(expected.addresses);
    expect(program.counters()).toMatchObject({ queries: 1, parsed: expected.parsed, learned: expected.learned, malformed: 0, truncated: 0 });
  });

  it('takes the fragments in any order and repeated, and parses nothing while one is missing', () => {
    const program = open();
    const x = bigExchange(4, 'shuffled-long-name.frag.example', 64);
    const parts = fragments(x.response);
    expect(parts.length).toBe(3);
    tcRun(program, x.query);
    tcRun(program, parts[2]!);
    tcRun(program, parts[0]!);
    tcRun(program, parts[2]!); // a repeat adds nothing (it kept the datagram from completing before)
    expect(program.counters().parsed).toBe(0);
    expect(program.membership()).toEqual([]);
    tcRun(program, parts[1]!);
    expect(learnedAddresses(program)).toEqual(reference(x).addresses);
    expect(program.counters().parsed).toBe(1);
  });

  it('marks the first fragment of a verified answer (the reassembled datagram keeps its mark), not the others', () => {
    const program = open();
    program.setAnswerMarks(new Map([[LO, BIT]]));
    const x = bigExchange(4, 'marked.frag.example', 64);
    const parts = fragments(x.response);
    tcRun(program, x.query);
    expect(parts.map((part) => tcRun(program, part))).toEqual([BIT, ...parts.slice(1, -1).map(() => 0), BIT]);
    expect(learnedAddresses(program)).toHaveLength(64);
    // an answer to no recorded query: its first fragment gets no mark, and nothing is learned
    const unasked = bigExchange(4, 'unasked.frag.example', 64);
    expect(fragments(unasked.response).map((part) => tcRun(program, part))).toEqual(fragments(unasked.response).map(() => 0));
    expect(learnedAddresses(program)).toHaveLength(64);
    // its failed query check is counted once, for the whole datagram (not for its first fragment too)
    expect(program.counters().unmatched_query).toBe(1);
  });

  it('ignores fragments from an untrusted address, forwarded fragments at tc egress, and the socket filter sees none', () => {
    const program = open();
    const rogue = bigExchange(4, 'rogue.frag.example', 64, { from: ROGUE4 });
    tcRun(program, rogue.query);
    for (const part of fragments(rogue.response)) tcRun(program, part);
    const forwarded = bigExchange(4, 'forwarded.frag.example', 64);
    tcRun(program, forwarded.query);
    for (const part of fragments(forwarded.response)) tcRun(program, part, LO, 7); // tc egress, came in on interface 7
    const viaSocket = bigExchange(4, 'socket.frag.example', 64);
    program.socketFilter.testRun({ data: ethernetFrame(viaSocket.query) });
    for (const part of fragments(viaSocket.response)) program.socketFilter.testRun({ data: ethernetFrame(part) });
    expect(program.membership()).toEqual([]);
    expect(program.counters()).toMatchObject({ parsed: 0, learned: 0 });
  });

  it('counts a datagram longer than the parser reads (4,096 message bytes) as truncated, and learns nothing from it', () => {
    const program = open();
    const x = bigExchange(6, 'a-name-long-enough-to-pass-four-kilobytes.frag.example', 64); // 64 × 82 bytes of records
    const parts = fragments(x.response);
    tcRun(program, x.query);
    for (const part of parts) tcRun(program, part);
    expect(program.membership()).toEqual([]);
    expect(program.counters().truncated).toBe(1);
  });
});
