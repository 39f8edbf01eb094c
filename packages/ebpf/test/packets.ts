// Crafted frames for BPF_PROG_TEST_RUN: Ethernet + IPv4/IPv6 + TCP/UDP/ICMPv6 headers.
import { parseAddress } from '@dnsplane/core';

export interface Frame {
  readonly src: string;
  readonly dst: string;
  readonly protocol: 'tcp' | 'udp' | 'icmpv6';
  readonly sport?: number;
  readonly dport?: number;
  /** ICMPv6 type. */
  readonly type?: number;
  /**
   * One fragment of a datagram: `offset` in bytes (a multiple of 8), `more` the MF / M flag.
   * A later fragment (offset > 0) carries 16 bytes of 0xff instead of the transport header.
   */
  readonly fragment?: { readonly id: number; readonly offset: number; readonly more: boolean };
}

const PROTOCOLS = { tcp: 6, udp: 17, icmpv6: 58 } as const;

export function frame(f: Frame): Buffer {
  const src = parseAddress(f.src);
  const dst = parseAddress(f.dst);
  if (!src || !dst || src.family !== dst.family) throw new RangeError(`bad addresses ${f.src} ${f.dst}`);
  const later = f.fragment !== undefined && f.fragment.offset > 0;
  const l4 = later ? Buffer.alloc(16, 0xff) : Buffer.alloc(f.protocol === 'tcp' ? 20 : 8);
  if (later) {
    // payload bytes in the middle of the datagram
  } else if (f.protocol === 'icmpv6') {
    l4[0] = f.type ?? 128;
  } else {
    l4.writeUInt16BE(f.sport ?? 40000, 0);
    l4.writeUInt16BE(f.dport ?? 80, 2);
    if (f.protocol === 'tcp') {
      l4[12] = 5 << 4;
      l4[13] = 0x02; // SYN
    } else {
      l4.writeUInt16BE(8, 4);
    }
  }
  const eth = Buffer.alloc(14);
  if (src.family === 4) {
    eth.writeUInt16BE(0x0800, 12);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + l4.length, 2);
    if (f.fragment !== undefined) {
      ip.writeUInt16BE(f.fragment.id & 0xffff, 4);
      ip.writeUInt16BE((f.fragment.more ? 0x2000 : 0) | (f.fragment.offset / 8), 6);
    }
    ip[8] = 64;
    ip[9] = PROTOCOLS[f.protocol];
    Buffer.from(src.bytes).copy(ip, 12);
    Buffer.from(dst.bytes).copy(ip, 16);
    return Buffer.concat([eth, ip, l4]);
  }
  eth.writeUInt16BE(0x86dd, 12);
  const ip6 = Buffer.alloc(40);
  ip6[0] = 0x60;
  ip6[6] = PROTOCOLS[f.protocol];
  ip6[7] = 64;
  Buffer.from(src.bytes).copy(ip6, 8);
  Buffer.from(dst.bytes).copy(ip6, 24);
  const extension = Buffer.alloc(f.fragment === undefined ? 0 : 8);
  if (f.fragment !== undefined) {
    extension[0] = ip6[6]!; // the fragment header names the transport protocol
    ip6[6] = 44;
    extension.writeUInt16BE(f.fragment.offset | (f.fragment.more ? 1 : 0), 2);
    extension.writeUInt32BE(f.fragment.id >>> 0, 4);
  }
  ip6.writeUInt16BE(extension.length + l4.length, 4);
  return Buffer.concat([eth, ip6, extension, l4]);
}

/** The same flow seen in the other direction. */
export function reply(f: Frame): Frame {
  return { ...f, src: f.dst, dst: f.src, ...(f.sport !== undefined ? { dport: f.sport } : {}), ...(f.dport !== undefined ? { sport: f.dport } : {}) };
}
