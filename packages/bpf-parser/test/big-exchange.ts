// A query and a large answer (up to 64 A or AAAA records, owner names written out) for the
// tests of what the parser puts together before it parses: IP fragments, TCP segments.
import { buildDnsPacket, type DnsSettings } from '@dnsplane/core';
import { CLIENT4, CLIENT6, SERVER4, SERVER6, TRUSTED_SERVERS } from './dns-generator.js';
import { dnsHeader, questionBytes } from './dns-exchange.js';

/** The parser settings of the tests that use these exchanges (a 64-record answer is within maxAddressesPerName). */
export const BIG_EXCHANGE_DNS: DnsSettings = { trustedServers: TRUSTED_SERVERS, minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 };

let nextId = 0x5100;

export interface Exchange {
  readonly query: Uint8Array;
  readonly response: Uint8Array;
  readonly addresses: readonly string[];
}

/**
 * A query for `name` and its answer of `count` A (or AAAA) records, each with its owner name
 * written out (no compression): the parser reads at most 64 answers, so the size comes from the
 * names — 64 records of a 17-character name are ~2 KB, of a 31-character one ~3 KB.
 */
export function bigExchange(family: 4 | 6, name: string, count: number, options: { readonly from?: string; readonly transport?: 'udp' | 'tcp' } = {}): Exchange {
  const id = nextId++;
  const client = family === 4 ? CLIENT4 : CLIENT6;
  const server = options.from ?? (family === 4 ? SERVER4 : SERVER6);
  const transport = options.transport ?? 'udp';
  const port = 30000 + (id % 20000);
  const header = (flags: number, answers: number): Buffer => dnsHeader(id, flags, answers);
  const type = family === 4 ? 1 : 28;
  const qname = questionBytes(name, type);
  const addresses: string[] = [];
  const records = Array.from({ length: count }, (_, i) => {
    const size = family === 4 ? 4 : 16;
    const owner = qname.subarray(0, qname.length - 4);
    const rec = Buffer.alloc(10 + size);
    rec.writeUInt16BE(type, 0);
    rec.writeUInt16BE(1, 2);
    rec.writeUInt32BE(300, 4);
    rec.writeUInt16BE(size, 8);
    if (family === 4) {
      const address = `198.19.${100 + (id % 50)}.${i + 1}`;
      Buffer.from(address.split('.').map(Number)).copy(rec, 10);
      addresses.push(address);
    } else {
      rec.writeUInt16BE(0xfd00, 10);
      rec.writeUInt16BE(0x19, 12);
      rec.writeUInt16BE(id, 22);
      rec.writeUInt16BE(i + 1, 24);
      addresses.push(`fd00:19::${id.toString(16)}:${(i + 1).toString(16)}`);
    }
    return Buffer.concat([owner, rec]);
  });
  return {
    query: buildDnsPacket({ family, src: client, dst: server, sport: port, dport: 53, transport, payload: Buffer.concat([header(0x0100, 0), qname]) }),
    response: buildDnsPacket({ family, src: server, dst: client, sport: 53, dport: port, transport, payload: Buffer.concat([header(0x8180, count), qname, ...records]) }),
    addresses,
  };
}

/**
 * A TCP packet's data cut at `cuts` (offsets into the data, length prefix included) into
 * segments, each with its own sequence number and IP length (checksums as they were: the
 * parser does not check them).
 */
export function tcpSegments(packet: Uint8Array, cuts: readonly number[]): Buffer[] {
  const p = Buffer.from(packet);
  const l4 = p[0]! >> 4 === 4 ? (p[0]! & 0xf) * 4 : 40;
  const dataAt = l4 + (p[l4 + 12]! >> 4) * 4;
  const data = p.subarray(dataAt);
  const seq = p.readUInt32BE(l4 + 4);
  const bounds = [0, ...[...cuts].sort((a, b) => a - b).filter((at) => at > 0 && at < data.length), data.length];
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const [from, to] = [bounds[i]!, bounds[i + 1]!];
    if (to === from) continue;
    const segment = Buffer.concat([p.subarray(0, dataAt), data.subarray(from, to)]);
    if (l4 === 40) segment.writeUInt16BE(segment.length - 40, 4);
    else segment.writeUInt16BE(segment.length, 2);
    segment.writeUInt32BE((seq + from) >>> 0, l4 + 4);
    out.push(segment);
  }
  return out;
}
