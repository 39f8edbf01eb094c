import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { decodeDnsMessage } from '../src/dns/decoder.js';
import { DnsTcpStream } from '../src/dns/tcp-stream.js';

function message(id: number, address: string): Uint8Array {
  return Uint8Array.from(dnsPacket.encode({
    type: 'response',
    id,
    questions: [{ type: 'A', name: 'tcp.example' }],
    answers: [{ type: 'A', name: 'tcp.example', ttl: 60, data: address }],
  }));
}

function framed(...messages: Uint8Array[]): Uint8Array {
  const total = messages.reduce((n, m) => n + 2 + m.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const m of messages) {
    out[at] = m.length >> 8;
    out[at + 1] = m.length & 0xff;
    out.set(m, at + 2);
    at += 2 + m.length;
  }
  return out;
}

describe('DnsTcpStream', () => {
  const a = message(1, '198.18.0.1');
  const b = message(2, '198.18.0.2');
  const c = message(3, '198.18.0.3');
  const stream = framed(a, b, c);

  it('returns several messages from one chunk', () => {
    const s = new DnsTcpStream();
    expect(s.feed(stream)).toEqual([a, b, c]);
    expect(s.pending).toBe(0);
  });

  it('reassembles messages split at every possible point, in order', () => {
    for (let cut1 = 0; cut1 <= stream.length; cut1++) {
      const s = new DnsTcpStream();
      const out = [...s.feed(stream.subarray(0, cut1)), ...s.feed(stream.subarray(cut1))];
      expect(out).toEqual([a, b, c]);
      expect(s.pending).toBe(0);
    }
  });

  it('reassembles byte by byte and keeps a partial tail pending', () => {
    const s = new DnsTcpStream();
    const out: Uint8Array[] = [];
    for (let i = 0; i < stream.length - 3; i++) out.push(...s.feed(stream.subarray(i, i + 1)));
    expect(out).toEqual([a, b]);
    expect(s.pending).toBe(2 + c.length - 3);
    expect(out.map((m) => decodeDnsMessage(m)).map((r) => r.ok && r.addresses[0]?.address)).toEqual(['198.18.0.1', '198.18.0.2']);
  });

  it('yields an empty message for a zero length prefix (which then decodes as malformed)', () => {
    const s = new DnsTcpStream();
    const [empty] = s.feed(Uint8Array.from([0, 0]));
    expect(empty).toEqual(new Uint8Array(0));
    expect(decodeDnsMessage(empty ?? new Uint8Array(0)).ok).toBe(false);
  });
});
