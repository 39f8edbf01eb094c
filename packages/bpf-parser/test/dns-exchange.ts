// A DNS query and its response (one A record) as IPv4/UDP packets between the test client
// and the trusted server of dns-generator.ts (or `from`, e.g. a rogue source), for kernel tests
// and benchmarks that need the parser to learn.
import { buildDnsPacket } from '@dnsplane/core';
import { CLIENT4, SERVER4 } from './dns-generator.js';

let nextId = 1;

/** A DNS header with one question and `answers` answers. */
export function dnsHeader(id: number, flags: number, answers: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(answers, 6);
  return h;
}

/** The question section for `name` (labels written out), type `type`, class IN. */
export function questionBytes(name: string, type: number): Buffer {
  return Buffer.concat([
    ...name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])),
    Buffer.from([0, 0, type, 0, 1]),
  ]);
}

export function exchangeA(name: string, address: string, ttl = 100, from = SERVER4): { query: Uint8Array; response: Uint8Array } {
  const id = nextId++ & 0xffff;
  const port = 20000 + (id % 40000);
  const qname = questionBytes(name, 1);
  const header = (flags: number, answers: number): Buffer => dnsHeader(id, flags, answers);
  const answer = Buffer.alloc(16);
  answer.writeUInt16BE(0xc00c, 0);
  answer.writeUInt16BE(1, 2);
  answer.writeUInt16BE(1, 4);
  answer.writeUInt32BE(ttl, 6);
  answer.writeUInt16BE(4, 10);
  Buffer.from(address.split('.').map(Number)).copy(answer, 12);
  return {
    query: buildDnsPacket({ family: 4, src: CLIENT4, dst: SERVER4, sport: port, dport: 53, transport: 'udp', payload: Buffer.concat([header(0x0100, 0), qname]) }),
    response: buildDnsPacket({ family: 4, src: from, dst: CLIENT4, sport: 53, dport: port, transport: 'udp', payload: Buffer.concat([header(0x8180, 1), qname, answer]) }),
  };
}
