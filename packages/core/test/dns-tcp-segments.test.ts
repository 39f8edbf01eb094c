import { describe, expect, it } from 'vitest';
import { SEGMENT_ASSEMBLY_LIFETIME_MS, TcpSegmentAssembler } from '../src/index.js';

/** A message of `length` bytes (byte i = i & 0xff) behind its two-byte length prefix. */
function framed(length: number): Uint8Array {
  const out = new Uint8Array(length + 2);
  out[0] = length >> 8;
  out[1] = length & 0xff;
  for (let i = 0; i < length; i++) out[i + 2] = i & 0xff;
  return out;
}

const FLOW = '4|198.18.0.53|53|198.18.1.10|40000';
const SEQ = 0xfffff000; // the stream wraps inside the message

describe('TcpSegmentAssembler', () => {
  it('passes a segment that holds a whole message (or cannot start one) as it is', () => {
    const assembler = new TcpSegmentAssembler();
    expect(assembler.segment(FLOW, SEQ, framed(100), 0).decision).toEqual({ kind: 'as-is' });
    const tooShort = framed(100).subarray(0, 50);
    tooShort[0] = 0;
    tooShort[1] = 5; // declares 5 bytes: no DNS message
    expect(assembler.segment(FLOW, SEQ, tooShort, 0).decision).toEqual({ kind: 'as-is' });
    const tooLong = framed(5000).subarray(0, 1000);
    expect(assembler.segment(FLOW, SEQ, tooLong, 0).decision).toEqual({ kind: 'as-is' });
    expect(assembler.pending).toBe(0);
  });

  it('puts a message together from segments in any order after the first, repeated ones included', () => {
    const assembler = new TcpSegmentAssembler();
    const whole = framed(3000);
    const piece = (from: number, to: number) => assembler.segment(FLOW, (SEQ + from) >>> 0, whole.subarray(from, to), 0);
    expect(piece(0, 1000).decision.kind).toBe('held');
    expect(piece(2000, 3002).decision.kind).toBe('held');
    expect(piece(500, 1200).decision.kind).toBe('held'); // overlaps what came
    expect(piece(2000, 3002).decision.kind).toBe('held'); // again
    const done = piece(1200, 2000);
    expect(done.decision).toEqual({ kind: 'whole', message: whole.subarray(2) });
    expect(done.ended).toEqual({ truncated: 0, malformed: 0 });
    expect(assembler.pending).toBe(0);
  });

  it('takes a length prefix on its own, even one byte at a time', () => {
    const assembler = new TcpSegmentAssembler();
    const whole = framed(40);
    expect(assembler.segment(FLOW, SEQ, whole.subarray(0, 1), 0).decision.kind).toBe('held');
    expect(assembler.segment(FLOW, SEQ + 1, whole.subarray(1, 2), 0).decision.kind).toBe('held');
    expect(assembler.segment(FLOW, SEQ + 2, whole.subarray(2), 0).decision).toEqual({ kind: 'whole', message: whole.subarray(2) });
  });

  it('leaves the next message\'s first bytes out of this one', () => {
    const assembler = new TcpSegmentAssembler();
    const whole = framed(100);
    assembler.segment(FLOW, SEQ, whole.subarray(0, 60), 0);
    const withNext = new Uint8Array([...whole.subarray(60), 0, 50, 1, 2]);
    expect(assembler.segment(FLOW, SEQ + 60, withNext, 0).decision).toEqual({ kind: 'whole', message: whole.subarray(2) });
  });

  it('ends an unfinished message when a segment comes past its end, and takes that segment as a new start', () => {
    const assembler = new TcpSegmentAssembler();
    assembler.segment(FLOW, SEQ, framed(300).subarray(0, 100), 0);
    const next = framed(50);
    const outcome = assembler.segment(FLOW, (SEQ + 302) >>> 0, next, 0);
    expect(outcome).toEqual({ decision: { kind: 'as-is' }, ended: { truncated: 1, malformed: 0 } });
    expect(assembler.pending).toBe(0);
  });

  it('gives up on a message of more than eight pieces apart, and one whose prefix (come alone) declares too little', () => {
    const assembler = new TcpSegmentAssembler();
    const whole = framed(2000);
    assembler.segment(FLOW, SEQ, whole.subarray(0, 10), 0);
    let ended = { truncated: 0, malformed: 0 };
    for (let i = 1; i <= 8; i++) ended = assembler.segment(FLOW, SEQ + i * 100, whole.subarray(i * 100, i * 100 + 10), 0).ended;
    expect(ended.truncated).toBe(1);
    expect(assembler.pending).toBe(0);

    expect(assembler.segment(FLOW, SEQ, new Uint8Array([0]), 0).decision.kind).toBe('held');
    expect(assembler.segment(FLOW, SEQ + 1, new Uint8Array([4, 1, 2, 3, 4]), 0)).toEqual({ decision: { kind: 'held' }, ended: { truncated: 0, malformed: 1 } });
  });

  it('forgets a message older than its lifetime when the flow\'s next segment comes', () => {
    const assembler = new TcpSegmentAssembler();
    const whole = framed(3000);
    assembler.segment(FLOW, SEQ, whole.subarray(0, 1000), 0);
    const late = assembler.segment(FLOW, SEQ + 1000, whole.subarray(1000), SEGMENT_ASSEMBLY_LIFETIME_MS + 1);
    expect(late.decision.kind).not.toBe('whole');
    expect(assembler.segment('another flow', SEQ, whole.subarray(0, 1000), 0).decision.kind).toBe('held');
  });
});
