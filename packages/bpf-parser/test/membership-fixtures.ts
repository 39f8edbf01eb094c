// Helpers of the membership-reader tests: packets to a destination, and membership entries
// written straight into the pinned maps (as the parser would write them).
import { buildDnsPacket, type IpFamily } from '@dnsplane/core';
import { BpfMap, MAP_NAMES, encodeExpiry, encodeMemberKey, ktimeNs } from '../src/index.js';

/** A small UDP packet (IP header first) from a lab address to `dst`. */
export function packetTo(dst: string, family: IpFamily = dst.includes(':') ? 6 : 4): Uint8Array {
  return buildDnsPacket({
    family,
    src: family === 4 ? '198.18.1.10' : 'fd00::1:10',
    dst,
    sport: 40000,
    dport: 443,
    transport: 'udp',
    payload: Buffer.from('membership test payload'),
  });
}

/**
 * A TCP segment to `dst`:443 with the given flags (SYN 0x02, ACK 0x10, PSH 0x08). The
 * checksum is not fixed up: the readers under test do not check it.
 */
export function tcpTo(dst: string, flags: number, family: IpFamily = dst.includes(':') ? 6 : 4): Uint8Array {
  const packet = buildDnsPacket({
    family,
    src: family === 4 ? '198.18.1.10' : 'fd00::1:10',
    dst,
    sport: 40000,
    dport: 443,
    transport: 'tcp',
    tcpFraming: 'raw',
    payload: new Uint8Array(0),
  });
  const l4 = family === 4 ? (packet[0]! & 0xf) * 4 : 40;
  packet[l4 + 13] = flags;
  return packet;
}

/** Writes (set, address) with an expiry `secondsFromNow` from now (negative: already expired). */
export class MembershipWriter {
  readonly #maps: Record<IpFamily, BpfMap>;

  constructor(pinRoot: string) {
    this.#maps = { 4: BpfMap.fromPinned(`${pinRoot}/${MAP_NAMES.members4}`), 6: BpfMap.fromPinned(`${pinRoot}/${MAP_NAMES.members6}`) };
  }

  write(setId: number, address: string, secondsFromNow: number): void {
    const family: IpFamily = address.includes(':') ? 6 : 4;
    const expiry = ktimeNs() + BigInt(Math.round(secondsFromNow * 1e9));
    this.#maps[family].update(encodeMemberKey({ setId, family, address }), encodeExpiry(expiry < 0n ? 0n : expiry));
  }

  close(): void {
    this.#maps[4].close();
    this.#maps[6].close();
  }
}
