// The tc membership mark on the real kernel through BPF_PROG_TEST_RUN: the bits of the sets
// whose live members the destination is, for the interface in the context's ifindex;
// foreign mark bits kept; expired, other-set and unknown-interface packets unmarked; IPv6.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDnsPacket } from '@dnsplane/core';
import { BpfMap, BpfObjectSpec, DnsParserProgram, MembershipMarker, ENDPOINT_SETS_LAYOUTS, ENDPOINT_SETS_MAP, MAP_NAMES, encodeConfig, interfaceIndex } from '../src/index.js';
import { ethernetFrame, testPinRoot } from './kernel-harness.js';
import { undoAfterEach } from './undo-after-each.js';
import { MembershipWriter, packetTo, tcpTo } from './membership-fixtures.js';

const SKB_SIZE = 192; // sizeof(struct __sk_buff)
const SKB_MARK = 8;
const SKB_IFINDEX = 40;
const TC_ACT_UNSPEC = 0xffffffff; // -1 as the u32 the test run reports
const MASK = 0x00ff0000;

const cleanup = undoAfterEach();

function setup(): { pinRoot: string; marker: MembershipMarker; writer: MembershipWriter } {
  const pinRoot = testPinRoot();
  cleanup.push(() => DnsParserProgram.removePins(pinRoot));
  const marker = MembershipMarker.load({ pinRoot });
  cleanup.push(() => marker.close());
  const writer = new MembershipWriter(pinRoot);
  cleanup.push(() => writer.close());
  return { pinRoot, marker, writer };
}

/** Runs a packet "arriving on" loopback (test runs use ifindex 1) with a starting mark; returns the mark after. */
function markOf(marker: MembershipMarker, packet: Uint8Array, mark = 0): number {
  const ctx = Buffer.alloc(SKB_SIZE);
  ctx.writeUInt32LE(mark >>> 0, SKB_MARK);
  ctx.writeUInt32LE(1, SKB_IFINDEX);
  const result = marker.program.testRun({ data: ethernetFrame(packet), ctx });
  expect(result.retval).toBe(TC_ACT_UNSPEC);
  expect(result.ctx).toBeDefined();
  return (result.ctx as Buffer).readUInt32LE(SKB_MARK);
}

describe('MembershipMarker (membership_mark)', () => {
  it('sets the bit of every set the destination is a live member of, keeps foreign bits', () => {
    const { marker, writer } = setup();
    const lo = interfaceIndex('lo');
    expect(lo).toBe(1);
    marker.setEndpointSets(lo, MASK, [
      { setId: 11, bit: 0x00010000 },
      { setId: 22, bit: 0x00020000 },
      { setId: 33, bit: 0x00400000 },
    ]);
    writer.write(11, '198.18.6.1', 60);
    writer.write(22, '198.18.6.1', 60);
    writer.write(33, '198.18.6.2', 60);
    writer.write(33, '198.18.6.1', -1); // expired
    writer.write(44, '198.18.6.3', 60); // a set this interface does not list
    writer.write(22, 'fd00::6:1', 60);
    writer.write(33, 'fd00::6:1', 60);

    expect(markOf(marker, packetTo('198.18.6.1'))).toBe(0x00030000);
    expect(markOf(marker, packetTo('198.18.6.2'))).toBe(0x00400000);
    expect(markOf(marker, packetTo('198.18.6.3'))).toBe(0);
    expect(markOf(marker, packetTo('198.18.6.9'))).toBe(0);
    expect(markOf(marker, packetTo('fd00::6:1'))).toBe(0x00420000);
    expect(markOf(marker, packetTo('fd00::6:9'))).toBe(0);
    // bits outside the mask are someone else's: kept; stale bits inside the mask: cleared
    expect(markOf(marker, packetTo('198.18.6.1'), 0xff000001)).toBe((0xff000001 | 0x00030000) >>> 0);
    expect(markOf(marker, packetTo('198.18.6.9'), 0x12ff0034)).toBe(0x12000034);
    expect(markOf(marker, packetTo('198.18.6.2'), 0x00010000)).toBe(0x00400000);
  });

  it('codes: the first code entry whose set holds the destination wins, codes never combine, bits still do', () => {
    const { marker, writer } = setup();
    const FIELD = 0x00f00000;
    marker.setEndpointSets(1, MASK, [
      { setId: 11, bit: 0x00010000 },
      { setId: 21, code: 0x00300000 },
      { setId: 22, code: 0x00500000 },
      { setId: 23, code: 0x00600000 },
    ]);
    writer.write(11, '198.18.6.1', 60);
    writer.write(22, '198.18.6.1', 60);
    writer.write(23, '198.18.6.1', 60); // later than 22 in entry order: not written
    writer.write(23, '198.18.6.2', 60);
    writer.write(21, '198.18.6.3', -1); // expired: the next code set that holds it counts
    writer.write(23, '198.18.6.3', 60);
    writer.write(21, 'fd00::6:1', 60);

    expect(markOf(marker, packetTo('198.18.6.1'))).toBe(0x00510000);
    expect(markOf(marker, packetTo('198.18.6.2'))).toBe(0x00600000);
    expect(markOf(marker, packetTo('198.18.6.3'))).toBe(0x00600000);
    expect(markOf(marker, packetTo('fd00::6:1'))).toBe(0x00300000);
    expect(markOf(marker, packetTo('198.18.6.9'), FIELD)).toBe(0);
    expect(marker.endpoints().get(1)?.entries).toEqual([
      { setId: 11, bit: 0x00010000 },
      { setId: 21, code: 0x00300000 },
      { setId: 22, code: 0x00500000 },
      { setId: 23, code: 0x00600000 },
    ]);
    // a code touching a set's own bit would turn into another code when the bit is ORed in
    expect(() => marker.setEndpointSets(1, MASK, [{ setId: 11, bit: 0x00100000 }, { setId: 21, code: 0x00300000 }])).toThrow(/both a set's own bit and part of a code/);
  });

  it('TCP: only a SYN without ACK is looked up; other segments get our bits cleared', () => {
    const { marker, writer } = setup();
    marker.setEndpointSets(1, MASK, [{ setId: 11, bit: 0x00010000 }]);
    writer.write(11, '198.18.6.1', 60);
    writer.write(11, 'fd00::6:1', 60);
    for (const dst of ['198.18.6.1', 'fd00::6:1']) {
      expect(markOf(marker, tcpTo(dst, 0x02)), `${dst} SYN`).toBe(0x00010000);
      expect(markOf(marker, tcpTo(dst, 0x12), 0x00ff0001), `${dst} SYN-ACK`).toBe(1);
      expect(markOf(marker, tcpTo(dst, 0x10)), `${dst} ACK`).toBe(0);
      expect(markOf(marker, tcpTo(dst, 0x18)), `${dst} PSH-ACK`).toBe(0);
      expect(markOf(marker, tcpTo(dst, 0x04)), `${dst} RST`).toBe(0);
    }
    // UDP has no such state: every datagram is looked up
    expect(markOf(marker, packetTo('198.18.6.1'))).toBe(0x00010000);
  });

  it('DNS to a trusted server (the parser\'s dnsp_config) is not looked up, other traffic to it is', () => {
    const { pinRoot, marker, writer } = setup();
    const config = BpfMap.fromPinned(join(pinRoot, MAP_NAMES.config));
    cleanup.push(() => config.close());
    config.update(Buffer.alloc(4), encodeConfig({
      minTTL: 30,
      extraTTL: 10,
      maxAddressesPerName: 64,
      trustedServers: [{ family: 4, address: '198.18.6.53', port: 53 }, { family: 6, address: 'fd00::6:53', port: 53 }],
    }));
    marker.setEndpointSets(1, MASK, [{ setId: 11, bit: 0x00010000 }]);
    for (const server of ['198.18.6.53', 'fd00::6:53']) {
      writer.write(11, server, 60); // the server is also a member (say a name resolves to it)
      const family = server.includes(':') ? 6 : 4;
      const dns = (transport: 'udp' | 'tcp', dport: number): Uint8Array =>
        buildDnsPacket({ family, src: family === 4 ? '198.18.1.10' : 'fd00::1:10', dst: server, sport: 40000, dport, transport, tcpFraming: 'raw', payload: Buffer.from('q') });
      expect(markOf(marker, dns('udp', 53), 0x00ff0000), `${server} udp 53`).toBe(0);
      const syn = Buffer.from(dns('tcp', 53));
      syn[(family === 4 ? 20 : 40) + 13] = 0x02;
      expect(markOf(marker, syn), `${server} tcp 53 SYN`).toBe(0);
      expect(markOf(marker, dns('udp', 443)), `${server} udp 443`).toBe(0x00010000);
      expect(markOf(marker, tcpTo(server, 0x02)), `${server} SYN to 443`).toBe(0x00010000);
    }
  });

  it('leaves packets of interfaces without an entry (and non-IP frames) alone', () => {
    const { marker, writer } = setup();
    writer.write(11, '198.18.6.1', 60);
    expect(markOf(marker, packetTo('198.18.6.1'), 0x00ff00ff)).toBe(0x00ff00ff);
    marker.setEndpointSets(1, MASK, [{ setId: 11, bit: 0x00010000 }]);
    expect(markOf(marker, packetTo('198.18.6.1'), 0x00ff00ff)).toBe(0x000100ff);
    expect(marker.endpoints()).toEqual(new Map([[1, { markMask: MASK, entries: [{ setId: 11, bit: 0x00010000 }] }]]));
    // an ARP frame: not IP, untouched
    const arp = Buffer.alloc(14 + 28);
    arp.writeUInt16BE(0x0806, 12);
    const ctx = Buffer.alloc(SKB_SIZE);
    ctx.writeUInt32LE(0x00ff0000, SKB_MARK);
    ctx.writeUInt32LE(1, SKB_IFINDEX);
    const run = marker.program.testRun({ data: arp, ctx });
    expect(run.retval).toBe(TC_ACT_UNSPEC);
    expect(run.ctx?.readUInt32LE(SKB_MARK)).toBe(0x00ff0000);
    expect(marker.removeEndpoint(1)).toBe(true);
    expect(marker.removeEndpoint(1)).toBe(false);
    expect(markOf(marker, packetTo('198.18.6.1'), 0x00ff00ff)).toBe(0x00ff00ff);
  });

  it('membership that expires stops marking without a delete; 32 sets per interface', () => {
    const { marker, writer } = setup();
    const entries = Array.from({ length: 32 }, (_, i) => ({ setId: 100 + i, bit: (1 << i) >>> 0 }));
    marker.setEndpointSets(1, 0xffffffff, entries);
    writer.write(100, '198.18.6.7', 60);
    writer.write(131, '198.18.6.7', 60);
    writer.write(115, '198.18.6.7', 0.3);
    expect(markOf(marker, packetTo('198.18.6.7'))).toBe((0x80000001 | 0x8000) >>> 0);
    const deadline = Date.now() + 5_000;
    let mark = 0;
    while (Date.now() < deadline && (mark = markOf(marker, packetTo('198.18.6.7'))) !== 0x80000001);
    expect(mark).toBe(0x80000001);
  });

  it('64 entries per interface: the last set still marks', () => {
    const { marker, writer } = setup();
    const codes: number[] = [];
    for (let v = 0x3; codes.length < 56; v++) if ((v & (v - 1)) !== 0 && (v & 0xff) === v) codes.push(v << 8);
    const entries = [
      ...Array.from({ length: 8 }, (_, i) => ({ setId: 100 + i, bit: (1 << (16 + i)) >>> 0 })),
      ...codes.map((code, i) => ({ setId: 200 + i, code })),
    ];
    expect(entries).toHaveLength(64);
    marker.setEndpointSets(1, 0x00ffff00, entries);
    writer.write(255, '198.18.6.8', 60);
    expect(markOf(marker, packetTo('198.18.6.8'))).toBe(codes[55]);
    writer.write(107, '198.18.6.8', 60);
    expect(markOf(marker, packetTo('198.18.6.8'))).toBe((codes[55]! | 0x00800000) >>> 0);
  });

  it('an older layout pinned as dnsp_endpoint_sets is replaced on load (its entries are written again by the next install)', () => {
    const pinRoot = testPinRoot();
    cleanup.push(() => DnsParserProgram.removePins(pinRoot));
    mkdirSync(pinRoot, { recursive: true });
    // any other map pinned under the name stands for the 32-entry layout
    const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'bpf-fixtures');
    execFileSync('make', ['-s', '-C', fixtures], { stdio: 'inherit' });
    const old = BpfObjectSpec.open(join(fixtures, 'loader_test.o'), { pinRoot: null });
    old.setMapPinPath('kv', join(pinRoot, ENDPOINT_SETS_MAP));
    old.load().close();
    expect(BpfMap.fromPinned(join(pinRoot, ENDPOINT_SETS_MAP)).valueSize).not.toBe(ENDPOINT_SETS_LAYOUTS.dnsplane_endpoint_sets.size);
    const marker = MembershipMarker.load({ pinRoot });
    cleanup.push(() => marker.close());
    expect(marker.endpointSetsMap.valueSize).toBe(ENDPOINT_SETS_LAYOUTS.dnsplane_endpoint_sets.size);
    marker.setEndpointSets(1, MASK, [{ setId: 11, bit: 0x00010000 }]);
    expect(marker.endpoints().get(1)?.entries).toEqual([{ setId: 11, bit: 0x00010000 }]);
  });

  it('a second load under the same pin root shares the endpoint programming; bad input writes nothing', () => {
    const { pinRoot, marker } = setup();
    marker.setEndpointSets(7, MASK, [{ setId: 1, bit: 0x00800000 }]);
    const again = MembershipMarker.load({ pinRoot });
    cleanup.push(() => again.close());
    expect(again.endpoints().get(7)).toEqual({ markMask: MASK, entries: [{ setId: 1, bit: 0x00800000 }] });
    expect(again.endpointSetsMap.name).toBe(ENDPOINT_SETS_MAP);
    expect(() => again.setEndpointSets(7, MASK, [{ setId: 1, bit: 0x00000001 }])).toThrow(/outside markMask/);
    expect(() => again.setEndpointSets(7, MASK, [{ setId: 1, bit: 0x00030000 }])).toThrow(/exactly one bit/);
    expect(() => again.setEndpointSets(-1, MASK, [])).toThrow(/ifindex/);
    expect(marker.endpoints().get(7)).toEqual({ markMask: MASK, entries: [{ setId: 1, bit: 0x00800000 }] });
  });
});
