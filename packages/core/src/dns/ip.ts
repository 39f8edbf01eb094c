// Address bytes inside a packet ↔ canonical text, for the DNS reference: thin views over
// net-address.ts, so the reference and the rest of dnsplane print addresses one way.
import type { IpFamily } from '../desired-state.js';
import { formatAddress, parseAddress, type AddressBytes } from '../net-address.js';

export function formatAddressBytes(family: IpFamily, bytes: Uint8Array, at = 0): string {
  return formatAddress({ family, bytes: bytes.subarray(at, at + (family === 4 ? 4 : 16)) });
}

export const formatIpv4 = (bytes: Uint8Array, at = 0): string => formatAddressBytes(4, bytes, at);
export const formatIpv6 = (bytes: Uint8Array, at = 0): string => formatAddressBytes(6, bytes, at);

/** Parses an IPv4 or IPv6 address (no brackets, no zone) into bytes; undefined if it is not one. */
export function parseAddressBytes(text: string): AddressBytes | undefined {
  return parseAddress(text);
}
