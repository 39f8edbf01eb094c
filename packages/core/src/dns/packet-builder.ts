// Builds IPv4/IPv6 + UDP/TCP packets around a DNS payload, for tests and the differential
// harness (the packet starts at the IP header, as a socket filter sees it).
import type { IpFamily } from '../desired-state.js';
import { parseAddressBytes } from './ip.js';

export interface DnsPacketSpec {
  readonly family: IpFamily;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly transport: 'udp' | 'tcp';
  /** The DNS message. */
  readonly payload: Uint8Array;
  /** TCP only: 'prefixed' (default) puts the 2-byte length before the message; 'raw' sends it as is. */
  readonly tcpFraming?: 'prefixed' | 'raw';
}

function addressBytes(text: string, family: IpFamily): Uint8Array {
  const parsed = parseAddressBytes(text);
  if (parsed === undefined || parsed.family !== family) throw new RangeError(`not an IPv${family} address: ${text}`);
  return parsed.bytes;
}

function onesComplementSum(data: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i < end; i += 2) sum += ((data[i] ?? 0) << 8) | (i + 1 < end ? (data[i + 1] ?? 0) : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function put16(buf: Uint8Array, at: number, value: number): void {
  buf[at] = (value >> 8) & 0xff;
  buf[at + 1] = value & 0xff;
}

/** An L3 packet (IP header first) carrying `payload` over UDP or TCP, checksums filled in. */
export function buildDnsPacket(spec: DnsPacketSpec): Uint8Array {
  const src = addressBytes(spec.src, spec.family);
  const dst = addressBytes(spec.dst, spec.family);
  const framed =
    spec.transport === 'tcp' && (spec.tcpFraming ?? 'prefixed') === 'prefixed'
      ? (() => {
          const out = new Uint8Array(spec.payload.length + 2);
          put16(out, 0, spec.payload.length);
          out.set(spec.payload, 2);
          return out;
        })()
      : spec.payload;
  const l4HeaderLength = spec.transport === 'udp' ? 8 : 20;
  const l4Length = l4HeaderLength + framed.length;
  const ipHeaderLength = spec.family === 4 ? 20 : 40;
  const packet = new Uint8Array(ipHeaderLength + l4Length);
  const protocol = spec.transport === 'udp' ? 17 : 6;
  if (spec.family === 4) {
    packet[0] = 0x45;
    put16(packet, 2, packet.length);
    put16(packet, 4, 0x1234);
    put16(packet, 6, 0x4000); // don't fragment
    packet[8] = 64;
    packet[9] = protocol;
    packet.set(src, 12);
    packet.set(dst, 16);
    put16(packet, 10, ~onesComplementSum(packet, 0, 20) & 0xffff);
  } else {
    packet[0] = 0x60;
    put16(packet, 4, l4Length);
    packet[6] = protocol;
    packet[7] = 64;
    packet.set(src, 8);
    packet.set(dst, 24);
  }
  const l4 = ipHeaderLength;
  put16(packet, l4, spec.sport);
  put16(packet, l4 + 2, spec.dport);
  if (spec.transport === 'udp') {
    put16(packet, l4 + 4, l4Length);
  } else {
    put16(packet, l4 + 4, 0x0001); // sequence number
    put16(packet, l4 + 10, 0x0001); // acknowledgement number
    packet[l4 + 12] = 5 << 4; // data offset: 20 bytes
    packet[l4 + 13] = 0x18; // PSH, ACK
    put16(packet, l4 + 14, 0xffff); // window
  }
  packet.set(framed, l4 + l4HeaderLength);
  // Pseudo-header checksum over addresses, protocol and L4 length.
  let pseudo = 0;
  pseudo = onesComplementSum(src, 0, src.length, pseudo);
  pseudo = onesComplementSum(dst, 0, dst.length, pseudo);
  pseudo += protocol + l4Length;
  const sum = onesComplementSum(packet, l4, packet.length, pseudo);
  let checksum = ~sum & 0xffff;
  if (spec.transport === 'udp' && checksum === 0) checksum = 0xffff;
  put16(packet, l4 + (spec.transport === 'udp' ? 6 : 16), checksum);
  return packet;
}
