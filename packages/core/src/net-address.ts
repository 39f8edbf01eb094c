// IP addresses and CIDRs in canonical text form, so equal networks print equally
// (lower-case, RFC 5952 compressed IPv6, host bits cleared). Pure: no I/O.
import { isIP } from 'node:net';
import type { Cidr, IpFamily } from './desired-state.js';

/** An address as bytes (4 or 16) with its family. */
export interface AddressBytes {
  readonly family: IpFamily;
  readonly bytes: Uint8Array;
}

/** The family of an address's text, or undefined when it is not an address (no bytes built). */
export function addressFamily(text: string): IpFamily | undefined {
  const kind = isIP(text);
  return kind === 4 || kind === 6 ? kind : undefined;
}

/** Parses "198.18.0.1" or "fd00::1" (no brackets, no zone); undefined when it is not an address. */
export function parseAddress(text: string): AddressBytes | undefined {
  const kind = isIP(text);
  if (kind === 4) {
    return { family: 4, bytes: Uint8Array.from(text.split('.').map((part) => Number(part))) };
  }
  if (kind === 6) return { family: 6, bytes: parseIpv6(text.toLowerCase()) };
  return undefined;
}

function parseIpv6(text: string): Uint8Array {
  // isIP has accepted it, so the structure is known to be valid.
  let head = text;
  let tail = '';
  const gap = text.indexOf('::');
  if (gap >= 0) {
    head = text.slice(0, gap);
    tail = text.slice(gap + 2);
  }
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const v4 = piece.split('.').map((octet) => Number(octet));
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const first = groups(head);
  const last = groups(tail);
  const all = [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  });
  return bytes;
}

/** Canonical text of an address: dotted quad, or RFC 5952 IPv6 (longest zero run compressed). */
export function formatAddress(address: AddressBytes): string {
  const b = address.bytes;
  if (address.family === 4) return `${b[0] ?? 0}.${b[1] ?? 0}.${b[2] ?? 0}.${b[3] ?? 0}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((b[i * 2] ?? 0) << 8) | (b[i * 2 + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]): string => list.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Canonical text of an address, or undefined when it is not one. */
export function canonicalAddress(text: string): string | undefined {
  const kind = isIP(text);
  // isIP accepts a dotted quad only in its canonical form (no leading zeros, no spaces): it is
  // its own canonical text — the common case, which a restore of 100,000 entries meets ~5 times each
  if (kind === 4) return text;
  if (kind === 6) return formatAddress({ family: 6, bytes: parseIpv6(text.toLowerCase()) });
  return undefined;
}

/**
 * Parses "198.18.0.0/15", "fd00::/8" or a bare address (a host network: /32 or /128) into a
 * canonical Cidr with the host bits cleared. Returns a reason string when it is not one.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const address = parseAddress(addressText);
  if (!address) return `"${addressText}" is not an IPv4 or IPv6 address`;
  const maxPrefix = address.family === 4 ? 32 : 128;
  let prefix = maxPrefix;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      return `prefix length "${prefixText}" must be 0..${maxPrefix}`;
    }
    prefix = Number(prefixText);
  }
  const bytes = Uint8Array.from(address.bytes);
  for (let bit = prefix; bit < maxPrefix; bit++) {
    const index = bit >> 3;
    bytes[index] = (bytes[index] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return { family: address.family, text: `${formatAddress({ family: address.family, bytes })}/${prefix}` };
}
