// The parser's way with a DNS message over TCP that spans segments, as the kernel program does
// it (bpf-parser's dnsplane_tcp_segment), segment by segment: the reference the kernel is
// tested against. It sees segments as a hook on the path sees them — in any order, repeated,
// some never — and keeps one message per flow and direction, in a bounded buffer.

/** The bytes an assembly holds, as the kernel's (shared with IP fragments: a UDP header or TCP's
 * two-byte prefix, and the longest message read): what a segment may add before the prefix came. */
export const SEGMENT_ASSEMBLY_MAX = 8 + 4096;
/** Disjoint byte ranges an assembly keeps; a piece that would make one more ends it. */
export const SEGMENT_ASSEMBLY_RANGES = 8;
/** An assembly older than this is dropped when its flow's next segment comes. */
export const SEGMENT_ASSEMBLY_LIFETIME_MS = 30_000;

const MESSAGE_MIN = 12; // a DNS header
const MESSAGE_MAX = 4096; // MAX_PARSED_MESSAGE_BYTES (reference-parser.ts, which imports this file)

/** What to make of one segment. */
export type SegmentDecision =
  /** The segment starts with a whole message (or cannot start one): parse it as it is. */
  | { readonly kind: 'as-is' }
  /** A piece of a message not yet whole: nothing to parse now. */
  | { readonly kind: 'held' }
  /** This segment completed the message. */
  | { readonly kind: 'whole'; readonly message: Uint8Array };

export interface SegmentOutcome {
  readonly decision: SegmentDecision;
  /** Counts of assemblies this segment ended unfinished (before or instead of the decision). */
  readonly ended: { truncated: number; malformed: number };
}

interface Assembly {
  readonly startedAt: number;
  /** Sequence number of the message's first byte (its length prefix). */
  readonly seq: number;
  /** 2 + the declared length, once the prefix came; 0 before. */
  total: number;
  readonly data: Uint8Array;
  /** Received [start, end) byte ranges, disjoint and not touching. */
  ranges: Array<[number, number]>;
}

export class TcpSegmentAssembler {
  readonly #assemblies = new Map<string, Assembly>();

  /** Assemblies in progress. */
  get pending(): number {
    return this.#assemblies.size;
  }

  /**
   * One segment's data (length prefix included where the segment has it) of the flow `flow`
   * (addresses and ports, one direction), with its sequence number.
   */
  segment(flow: string, seq: number, payload: Uint8Array, nowMs: number): SegmentOutcome {
    const ended = { truncated: 0, malformed: 0 };
    const declared = payload.length >= 2 ? ((payload[0] ?? 0) << 8) | (payload[1] ?? 0) : 0;
    let assembly = this.#assemblies.get(flow);
    if (assembly !== undefined && nowMs - assembly.startedAt > SEGMENT_ASSEMBLY_LIFETIME_MS) {
      this.#assemblies.delete(flow);
      assembly = undefined;
    }
    let offset = 0;
    if (assembly !== undefined) {
      offset = (seq - assembly.seq) >>> 0;
      if (offset >= 0x80000000) return { decision: { kind: 'as-is' }, ended }; // before the message
      if (offset >= (assembly.total || SEGMENT_ASSEMBLY_MAX)) {
        this.#assemblies.delete(flow);
        ended.truncated++;
        assembly = undefined;
      }
    }
    if (assembly === undefined) {
      if (payload.length >= 2 && (declared + 2 <= payload.length || declared < MESSAGE_MIN || declared > MESSAGE_MAX)) {
        return { decision: { kind: 'as-is' }, ended };
      }
      assembly = { startedAt: nowMs, seq: seq >>> 0, total: 0, data: new Uint8Array(SEGMENT_ASSEMBLY_MAX), ranges: [] };
      this.#assemblies.set(flow, assembly);
      offset = 0;
    }
    const limit = assembly.total || SEGMENT_ASSEMBLY_MAX;
    const length = Math.min(payload.length, limit - offset);
    if (!this.#add(assembly, offset, offset + length)) {
      this.#assemblies.delete(flow);
      ended.truncated++;
      return { decision: { kind: 'held' }, ended };
    }
    assembly.data.set(payload.subarray(0, length), offset);
    if (assembly.total === 0 && assembly.ranges.some(([start, end]) => start === 0 && end >= 2)) {
      const length = ((assembly.data[0] ?? 0) << 8) | (assembly.data[1] ?? 0);
      if (length < MESSAGE_MIN || length > MESSAGE_MAX) {
        this.#assemblies.delete(flow);
        if (length < MESSAGE_MIN) ended.malformed++;
        else ended.truncated++;
        return { decision: { kind: 'held' }, ended };
      }
      assembly.total = length + 2;
    }
    const [first] = assembly.ranges;
    if (assembly.total === 0 || assembly.ranges.length !== 1 || first === undefined || first[0] !== 0 || first[1] < assembly.total) {
      return { decision: { kind: 'held' }, ended };
    }
    this.#assemblies.delete(flow);
    return { decision: { kind: 'whole', message: assembly.data.slice(2, assembly.total) }, ended };
  }

  /** Merges [start, end) into the ranges; false when they would pass SEGMENT_ASSEMBLY_RANGES. */
  #add(assembly: Assembly, start: number, end: number): boolean {
    const kept: Array<[number, number]> = [];
    for (const [s, e] of assembly.ranges) {
      if (s <= end && start <= e) {
        start = Math.min(start, s);
        end = Math.max(end, e);
      } else kept.push([s, e]);
    }
    if (kept.length >= SEGMENT_ASSEMBLY_RANGES) return false;
    kept.push([start, end]);
    assembly.ranges = kept;
    return true;
  }
}
