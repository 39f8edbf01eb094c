// Reading packet captures (capture.ts): pure, on pcap bytes built here the way tcpdump writes
// them (little-endian, nanosecond magic, Ethernet link type).
import { describe, expect, it } from 'vitest';
import { dnsCrossings, dnsSightings, readPcap } from './capture.js';

function pcapFile(records: ReadonlyArray<{ readonly atNs: bigint; readonly frame: Uint8Array }>, magic = 0xa1b23c4d): Uint8Array {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(magic, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(262144, 16);
  header.writeUInt32LE(1, 20); // Ethernet
  const parts: Buffer[] = [header];
  for (const { atNs, frame } of records) {
    const record = Buffer.alloc(16);
    const fraction = magic === 0xa1b23c4d ? atNs % 1_000_000_000n : (atNs % 1_000_000_000n) / 1000n;
    record.writeUInt32LE(Number(atNs / 1_000_000_000n), 0);
    record.writeUInt32LE(Number(fraction), 4);
    record.writeUInt32LE(frame.byteLength, 8);
    record.writeUInt32LE(frame.byteLength, 12);
    parts.push(record, Buffer.from(frame));
  }
  return Buffer.concat(parts);
}

/** An Ethernet frame with a UDP datagram whose payload starts with DNS transaction id `id`. */
function udpFrame(family: 4 | 6, sport: number, dport: number, id: number): Uint8Array {
  const l3 = family === 4 ? 20 : 40;
  const frame = Buffer.alloc(14 + l3 + 8 + 12);
  frame.writeUInt16BE(family === 4 ? 0x0800 : 0x86dd, 12);
  if (family === 4) {
    frame[14] = 0x45;
    frame[23] = 17;
  } else {
    frame[14] = 0x60;
    frame[20] = 17;
  }
  frame.writeUInt16BE(sport, 14 + l3);
  frame.writeUInt16BE(dport, 14 + l3 + 2);
  frame.writeUInt16BE(id, 14 + l3 + 8);
  return frame;
}

describe('packet captures', () => {
  it('reads nanosecond and microsecond pcap files, and stops at a record cut short', () => {
    const frame = udpFrame(4, 40000, 53, 7);
    const nano = readPcap(pcapFile([{ atNs: 1_700_000_000_123_456_789n, frame }]));
    expect(nano).toHaveLength(1);
    expect(nano[0]!.atNs).toBe(1_700_000_000_123_456_789n);
    expect(Buffer.from(nano[0]!.frame)).toEqual(Buffer.from(frame));
    const micro = readPcap(pcapFile([{ atNs: 1_700_000_000_123_456_000n, frame }], 0xa1b2c3d4));
    expect(micro[0]!.atNs).toBe(1_700_000_000_123_456_000n);
    const whole = pcapFile([
      { atNs: 1n, frame },
      { atNs: 2n, frame },
    ]);
    expect(readPcap(whole.subarray(0, whole.byteLength - 3))).toHaveLength(1);
    expect(() => readPcap(Buffer.alloc(24))).toThrow(/magic/);
  });

  it('finds DNS over UDP in both families and keys a query and its answer alike', () => {
    const records = [
      { atNs: 10n, frame: udpFrame(4, 40000, 53, 7) },
      { atNs: 20n, frame: udpFrame(6, 53, 40001, 8) },
      { atNs: 30n, frame: udpFrame(4, 40002, 80, 9) }, // not DNS
    ];
    expect(dnsSightings(readPcap(pcapFile(records)))).toEqual([
      { atNs: 10n, query: true, key: '40000/7' },
      { atNs: 20n, query: false, key: '40001/8' },
    ]);
  });

  it('times each message from the edge it left to the edge it reached; a message missed or seen twice on one side is left out', () => {
    const q = (key: string, atNs: bigint) => ({ atNs, query: true, key });
    const a = (key: string, atNs: bigint) => ({ atNs, query: false, key });
    const client = [q('1/1', 1_000n), a('1/1', 9_000n), q('2/2', 20_000n), q('3/3', 30_000n), q('3/3', 30_500n), a('3/3', 39_000n)];
    const server = [q('1/1', 3_500n), a('1/1', 7_250n), q('2/2', 22_000n), q('3/3', 32_000n), a('3/3', 37_000n)];
    const crossings = dnsCrossings(client, server);
    expect(crossings.get('1/1')).toEqual({ queryUs: 2.5, answerUs: 1.75 });
    expect(crossings.get('2/2')).toEqual({ queryUs: 2 }); // the answer never came
    expect(crossings.get('3/3')).toEqual({ answerUs: 2 }); // the query twice on the client's side
  });
});
