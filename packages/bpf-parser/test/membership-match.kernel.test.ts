// The per-set xt_bpf matches on the real kernel: BPF_PROG_TEST_RUN of the pinned programs
// against membership entries written into the shared pinned maps (hit, miss, expired,
// another set, IPv6, not IP), pin reuse and pruning, and the parser's own writes seen by a
// match loaded under the same pin root.
import { existsSync, statSync } from 'node:fs';
import { buildDnsPacket, parseDomainPattern } from '@dnsplane/core';
import { describe, expect, it } from 'vitest';
import { BpfProgram, DnsParserProgram, MembershipMatchPrograms, xtMemberPinPath } from '../src/index.js';
import { CLIENT4, SERVER4 } from './dns-generator.js';
import { ethernetFrame, testPinRoot } from './kernel-harness.js';
import { undoAfterEach } from './undo-after-each.js';
import { MembershipWriter, packetTo } from './membership-fixtures.js';

const SET_A = 0x1234abcd;
const SET_B = 0x00000007;

const cleanup = undoAfterEach();

function matches(pinRoot: string, pins: Map<number, string>): (setId: number, packet: Uint8Array) => number {
  const programs = new Map<number, BpfProgram>();
  cleanup.push(() => programs.forEach((p) => p.close()));
  return (setId, packet) => {
    let program = programs.get(setId);
    if (program === undefined) {
      program = BpfProgram.fromPinned(pins.get(setId) ?? xtMemberPinPath(pinRoot, setId));
      programs.set(setId, program);
    }
    return program.testRun({ data: ethernetFrame(packet) }).retval;
  };
}

function setup(): { pinRoot: string; matcher: MembershipMatchPrograms } {
  const pinRoot = testPinRoot();
  const matcher = new MembershipMatchPrograms({ pinRoot });
  cleanup.push(() => DnsParserProgram.removePins(pinRoot));
  cleanup.push(() => matcher.close());
  return { pinRoot, matcher };
}

describe('MembershipMatchPrograms (xt_member)', () => {
  it('matches a live member destination of its own set only (IPv4 and IPv6)', () => {
    const { pinRoot, matcher } = setup();
    const pins = matcher.ensure([SET_A, SET_B]);
    expect([...pins.keys()]).toEqual([SET_A, SET_B]);
    expect(pins.get(SET_A)).toBe(`${pinRoot}/xt_member_1234abcd`);
    expect(pins.get(SET_B)).toBe(`${pinRoot}/xt_member_00000007`);
    const writer = new MembershipWriter(pinRoot);
    cleanup.push(() => writer.close());
    writer.write(SET_A, '198.18.5.1', 60);
    writer.write(SET_A, '198.18.5.2', -1); // expired
    writer.write(SET_B, '198.18.5.3', 60);
    writer.write(SET_A, 'fd00::5:1', 60);
    writer.write(SET_A, 'fd00::5:2', -1);
    writer.write(SET_B, 'fd00::5:3', 60);
    const run = matches(pinRoot, pins);

    expect(run(SET_A, packetTo('198.18.5.1'))).not.toBe(0); // hit
    expect(run(SET_A, packetTo('198.18.5.9'))).toBe(0); // miss
    expect(run(SET_A, packetTo('198.18.5.2'))).toBe(0); // expired
    expect(run(SET_A, packetTo('198.18.5.3'))).toBe(0); // member of the other set
    expect(run(SET_B, packetTo('198.18.5.3'))).not.toBe(0);
    expect(run(SET_B, packetTo('198.18.5.1'))).toBe(0);
    expect(run(SET_A, packetTo('fd00::5:1'))).not.toBe(0);
    expect(run(SET_A, packetTo('fd00::5:9'))).toBe(0);
    expect(run(SET_A, packetTo('fd00::5:2'))).toBe(0);
    expect(run(SET_A, packetTo('fd00::5:3'))).toBe(0);
    expect(run(SET_B, packetTo('fd00::5:3'))).not.toBe(0);
    // the source address does not count: a packet FROM a member to a non-member
    const fromMember = buildDnsPacket({ family: 4, src: '198.18.5.1', dst: '198.18.5.9', sport: 1, dport: 2, transport: 'udp', payload: Buffer.alloc(4) });
    expect(run(SET_A, fromMember)).toBe(0);
    // a member entry that expires: it stops matching without anyone deleting it
    writer.write(SET_A, '198.18.5.4', 0.3);
    expect(run(SET_A, packetTo('198.18.5.4'))).not.toBe(0);
    const deadline = Date.now() + 5_000;
    let after = 1;
    while (Date.now() < deadline && after !== 0) after = run(SET_A, packetTo('198.18.5.4'));
    expect(after).toBe(0);
  });

  it('reuses existing pins, pins missing ones, prunes the rest', () => {
    const { pinRoot, matcher } = setup();
    const first = matcher.ensure([SET_A]);
    const inode = statSync(first.get(SET_A) ?? '').ino;
    const second = matcher.ensure([SET_A, SET_B, SET_B]);
    expect(second.size).toBe(2);
    expect(statSync(second.get(SET_A) ?? '').ino).toBe(inode);
    expect(matcher.pinned()).toEqual([SET_B, SET_A]);
    // another instance (an agent restart) sees and reuses the same pins
    const again = new MembershipMatchPrograms({ pinRoot });
    expect(statSync(again.ensure([SET_A]).get(SET_A) ?? '').ino).toBe(inode);
    expect(matcher.prune([SET_B])).toEqual([SET_A]);
    expect(existsSync(xtMemberPinPath(pinRoot, SET_A))).toBe(false);
    expect(existsSync(xtMemberPinPath(pinRoot, SET_B))).toBe(true);
    expect(matcher.pinned()).toEqual([SET_B]);
    expect(() => matcher.ensure([-1])).toThrow(RangeError);
    expect(() => matcher.ensure([2 ** 32])).toThrow(RangeError);
    matcher.close();
    expect(() => matcher.ensure([SET_A])).toThrow(/closed/);
  });

  it('loads fast: many sets in a short time', () => {
    const { matcher } = setup();
    const ids = Array.from({ length: 40 }, (_, i) => 1000 + i);
    const started = process.hrtime.bigint();
    const pins = matcher.ensure(ids);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(pins.size).toBe(40);
    // generous for a loaded 2-core machine; typically a few ms per set
    expect(ms / ids.length).toBeLessThan(100);
  });

  it('sees what the parser learns (same pin root, same maps)', () => {
    const { pinRoot, matcher } = setup();
    const parser = DnsParserProgram.load({ pinRoot });
    cleanup.push(() => parser.close());
    parser.configure({ trustedServers: [{ family: 4, address: SERVER4, port: 53 }], minTTL: 30, extraTTL: 0, maxAddressesPerName: 16 });
    parser.setDomainSets([{ id: SET_A, name: 'ds', patterns: [parseDomainPattern('*.example.com', 'calico')] }]);
    const pins = matcher.ensure([SET_A]);
    const run = matches(pinRoot, pins);
    expect(run(SET_A, packetTo('198.18.7.7'))).toBe(0);

    const name = Buffer.from([3, ...Buffer.from('www'), 7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0, 0, 1, 0, 1]);
    const header = (flags: number, an: number): Buffer => Buffer.from([0x12, 0x34, flags >> 8, flags & 0xff, 0, 1, 0, an, 0, 0, 0, 0]);
    const answer = Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 198, 18, 7, 7]);
    const query = buildDnsPacket({ family: 4, src: CLIENT4, dst: SERVER4, sport: 40001, dport: 53, transport: 'udp', payload: Buffer.concat([header(0x0100, 0), name]) });
    const response = buildDnsPacket({ family: 4, src: SERVER4, dst: CLIENT4, sport: 53, dport: 40001, transport: 'udp', payload: Buffer.concat([header(0x8180, 1), name, answer]) });
    parser.socketFilter.testRun({ data: ethernetFrame(query) });
    parser.socketFilter.testRun({ data: ethernetFrame(response) });
    expect(parser.membership().map((m) => m.address)).toEqual(['198.18.7.7']);
    expect(run(SET_A, packetTo('198.18.7.7'))).not.toBe(0);
  });
});
