// Address bytes ↔ canonical text for the DNS reference (dotted quad; RFC 5952 IPv6 in
// pure hex, longest run of two or more zero groups compressed, first run on a tie).
import { isIP } from 'node:net';
import type { IpFamily } from '../desired-state.js';

export function formatIpv4(bytes: Uint8Array, at = 0): string {
  return `${bytes[at] ?? 0}.${bytes[at + 1] ?? 0}.${bytes[at + 2] ?? 0}.${bytes[at + 3] ?? 0}`;
}

export function formatIpv6(bytes: Uint8Array, at = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((bytes[at + i * 2] ?? 0) << 8) | (bytes[at + i * 2 + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]): string => list.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

export function formatAddressBytes(family: IpFamily, bytes: Uint8Array, at = 0): string {
  return family === 4 ? formatIpv4(bytes, at) : formatIpv6(bytes, at);
}

/** Parses an IPv4 or IPv6 address (no brackets, no zone) into bytes; undefined if it is not one. */
export function parseAddressBytes(text: string): { family: IpFamily; bytes: Uint8Array } | undefined {
  const kind = isIP(text);
  if (kind === 4) return { family: 4, bytes: Uint8Array.from(text.split('.').map(Number)) };
  if (kind !== 6) return undefined;
  const lower = text.toLowerCase();
  const gap = lower.indexOf('::');
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const v4 = piece.split('.').map(Number);
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else out.push(parseInt(piece, 16));
    }
    return out;
  };
  const head = groups(gap >= 0 ? lower.slice(0, gap) : lower);
  const tail = gap >= 0 ? groups(lower.slice(gap + 2)) : [];
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  });
  return { family: 6, bytes };
}

/** Canonical text of any address text form; undefined if it is not an address. */
export function canonicalAddress(text: string): string | undefined {
  const parsed = parseAddressBytes(text);
  return parsed && formatAddressBytes(parsed.family, parsed.bytes);
}
