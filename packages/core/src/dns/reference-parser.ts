// The packet-level reference of the kernel DNS parser: the same decisions, in the same order,
// on the same inputs (an L3 packet), so a differential test can compare membership writes and
// counters one packet at a time. The order of checks is documented in packages/core/README.md.
import type { DnsSettings, DomainSet, IpFamily } from '../desired-state.js';
import type { Clock } from '../runtime.js';
import { decodeDnsMessage } from './decoder.js';
import { formatAddressBytes, parseAddressBytes } from './ip.js';
import { planLearning } from './learn.js';
import { isWireProblem, readHeader, readQuestion } from './wire.js';
import { TcpSegmentAssembler } from './tcp-segments.js';

/** How long a remembered query can be answered. */
export const QUERY_LIFETIME_MS = 10_000;

export const PARSER_COUNTERS = [
  'parsed',
  'learned',
  'untrusted',
  'unmatched_query',
  'malformed',
  'truncated',
  'over_limit',
  'not_response',
  'rejected',
  'queries',
] as const;
export type ParserCounter = (typeof PARSER_COUNTERS)[number];
export type ParserCounters = Record<ParserCounter, number>;

/**
 * What one packet was. `ignored` (not DNS to or from a trusted server) counts nothing; every
 * other outcome adds one to the counter of the same name (`query` → `queries`).
 */
export type ParseOutcomeKind =
  | 'ignored'
  | 'query'
  | 'untrusted'
  | 'not_response'
  | 'rejected'
  | 'malformed'
  | 'unmatched_query'
  | 'truncated'
  | 'parsed';

export interface MembershipWrite {
  readonly setId: number;
  readonly family: IpFamily;
  readonly address: string;
  /** Milliseconds on the parser's clock. */
  readonly expiresAt: number;
}

export interface ParseOutcome {
  readonly outcome: ParseOutcomeKind;
  /**
   * Membership writes, in order: credited addresses in packet order, then set id ascending.
   * `expiresAt` is the expiry the entry holds after the write (the later of the old and the
   * new one), as the kernel's ring-buffer event reports it.
   */
  readonly writes: readonly MembershipWrite[];
  /** Candidate addresses not credited because of maxAddressesPerName. */
  readonly overLimit: number;
  /** Human-readable detail for malformed/truncated/ignored outcomes. */
  readonly reason?: string;
}

const OUTCOME_COUNTER: Record<Exclude<ParseOutcomeKind, 'ignored'>, ParserCounter> = {
  query: 'queries',
  untrusted: 'untrusted',
  not_response: 'not_response',
  rejected: 'rejected',
  malformed: 'malformed',
  unmatched_query: 'unmatched_query',
  truncated: 'truncated',
  parsed: 'parsed',
};

/** (set, address) → expiry, as the membership maps hold it. Lookup treats expiry ≤ now as absent. */
export class ReferenceMembership {
  private readonly entries = new Map<string, MembershipWrite>();

  constructor(private readonly clock: Clock) {}

  /** Records a write; an existing entry keeps the later expiry. Returns the entry as stored. */
  write(entry: MembershipWrite): MembershipWrite {
    const key = `${entry.setId}|${entry.address}`;
    const existing = this.entries.get(key);
    if (existing !== undefined && existing.expiresAt >= entry.expiresAt) return existing;
    this.entries.set(key, entry);
    return entry;
  }

  /** The expiry of (set, address) when it is in force at `nowMs`, else undefined. */
  lookup(setId: number, address: string, nowMs: number = this.clock.now()): number | undefined {
    const entry = this.entries.get(`${setId}|${address}`);
    return entry !== undefined && entry.expiresAt > nowMs ? entry.expiresAt : undefined;
  }

  /** Entries in force at `nowMs`, sorted by set id then address. */
  list(nowMs: number = this.clock.now()): MembershipWrite[] {
    return [...this.entries.values()]
      .filter((entry) => entry.expiresAt > nowMs)
      .sort((a, b) => a.setId - b.setId || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }
}

/** The kernel parser copies at most this many message bytes: beyond them the message is cut. */
export const MAX_PARSED_MESSAGE_BYTES = 4096;

export interface ReferenceParserOptions {
  readonly domainSets: readonly DomainSet[];
  readonly dns: DnsSettings;
  readonly clock: Clock;
  /** Message bytes looked at (default MAX_PARSED_MESSAGE_BYTES, the kernel's copy size). */
  readonly maxMessageBytes?: number;
}

/** An IPv4/IPv6 packet's addresses, ports and L4 payload, as the parser reads them (TCP: the segment's data, length prefix included). */
export interface Transport {
  readonly family: IpFamily;
  readonly src: string;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly tcp: boolean;
  /** TCP: the segment's sequence number; 0 for UDP. */
  readonly seq: number;
  readonly payload: Uint8Array;
}

const u16 = (b: Uint8Array, at: number): number => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
const u32 = (b: Uint8Array, at: number): number => ((u16(b, at) << 16) | u16(b, at + 2)) >>> 0;

/** IP + UDP/TCP headers; undefined when the packet is not something the parser looks at. */
/** The transport view of an L3 packet; undefined for a fragment, another protocol or a cut packet. */
export function parseTransport(packet: Uint8Array): Transport | undefined {
  const version = (packet[0] ?? 0) >> 4;
  let family: IpFamily;
  let protocol: number;
  let l4Start: number;
  let l4End: number;
  let srcAt: number;
  let dstAt: number;
  if (version === 4) {
    if (packet.length < 20) return undefined;
    const ihl = ((packet[0] ?? 0) & 0x0f) * 4;
    const total = u16(packet, 2);
    if (ihl < 20 || total < ihl || total > packet.length) return undefined;
    if ((u16(packet, 6) & 0x3fff) !== 0) return undefined; // a fragment
    family = 4;
    protocol = packet[9] ?? 0;
    srcAt = 12;
    dstAt = 16;
    l4Start = ihl;
    l4End = total;
  } else if (version === 6) {
    if (packet.length < 40) return undefined;
    const payloadLength = u16(packet, 4);
    if (40 + payloadLength > packet.length) return undefined;
    family = 6;
    protocol = packet[6] ?? 0; // no extension headers
    srcAt = 8;
    dstAt = 24;
    l4Start = 40;
    l4End = 40 + payloadLength;
  } else return undefined;
  const l4Length = l4End - l4Start;
  let payload: Uint8Array;
  if (protocol === 17) {
    if (l4Length < 8) return undefined;
    const udpLength = u16(packet, l4Start + 4);
    if (udpLength < 8 || udpLength > l4Length) return undefined;
    payload = packet.subarray(l4Start + 8, l4Start + udpLength);
  } else if (protocol === 6) {
    if (l4Length < 20) return undefined;
    const dataOffset = ((packet[l4Start + 12] ?? 0) >> 4) * 4;
    if (dataOffset < 20 || dataOffset > l4Length) return undefined;
    payload = packet.subarray(l4Start + dataOffset, l4End);
  } else return undefined;
  return {
    family,
    src: formatAddressBytes(family, packet, srcAt),
    dst: formatAddressBytes(family, packet, dstAt),
    sport: u16(packet, l4Start),
    dport: u16(packet, l4Start + 2),
    tcp: protocol === 6,
    seq: protocol === 6 ? u32(packet, l4Start + 4) : 0,
    payload,
  };
}

const NOTHING: readonly MembershipWrite[] = [];

export class ReferenceParser {
  readonly membership: ReferenceMembership;
  readonly counters: ParserCounters = Object.fromEntries(PARSER_COUNTERS.map((name) => [name, 0])) as ParserCounters;
  private readonly trusted = new Set<string>();
  private readonly trustedPorts = new Set<number>();
  private readonly queries = new Map<string, number>();
  private readonly segments = new TcpSegmentAssembler();
  private readonly domainSets: readonly DomainSet[];
  private readonly dns: DnsSettings;
  private readonly clock: Clock;
  private insertsSinceSweep = 0;
  private readonly maxMessageBytes: number;

  constructor(options: ReferenceParserOptions) {
    this.domainSets = options.domainSets;
    this.dns = options.dns;
    this.clock = options.clock;
    this.maxMessageBytes = options.maxMessageBytes ?? MAX_PARSED_MESSAGE_BYTES;
    this.membership = new ReferenceMembership(options.clock);
    for (const server of options.dns.trustedServers) {
      const parsed = parseAddressBytes(server.address);
      if (parsed === undefined) throw new RangeError(`trusted server address is not an address: ${server.address}`);
      this.trusted.add(`${parsed.family}|${formatAddressBytes(parsed.family, parsed.bytes)}|${server.port}`);
      this.trustedPorts.add(server.port);
    }
  }

  /** Queries remembered and not yet expired. */
  pendingQueries(nowMs: number = this.clock.now()): number {
    let n = 0;
    for (const expiry of this.queries.values()) if (expiry > nowMs) n++;
    return n;
  }

  /** Feeds one L3 packet (IP header first) through the parser semantics. */
  observe(l3Packet: Uint8Array): ParseOutcome {
    const decided = this.decide(l3Packet);
    if (decided.outcome !== 'ignored') this.counters[OUTCOME_COUNTER[decided.outcome]]++;
    this.counters.learned += decided.writes.length;
    this.counters.over_limit += decided.overLimit;
    if (decided.writes.length === 0) return decided;
    // Applied one by one, as the kernel does: a repeated (set, address) sees the earlier write.
    const writes = decided.writes.map((write) => this.membership.write(write));
    return { ...decided, writes };
  }

  private decide(packet: Uint8Array): ParseOutcome {
    const now = this.clock.now();
    const t = parseTransport(packet);
    if (t === undefined) return { outcome: 'ignored', writes: NOTHING, overLimit: 0, reason: 'not UDP/TCP over IPv4/IPv6' };
    if (t.tcp && t.payload.length === 0) return { outcome: 'ignored', writes: NOTHING, overLimit: 0, reason: 'TCP segment without payload' };
    let path: 'query' | 'response';
    if (this.trusted.has(`${t.family}|${t.dst}|${t.dport}`)) path = 'query';
    else if (this.trusted.has(`${t.family}|${t.src}|${t.sport}`)) path = 'response';
    else if (this.trustedPorts.has(t.sport)) return { outcome: 'untrusted', writes: NOTHING, overLimit: 0 };
    else return { outcome: 'ignored', writes: NOTHING, overLimit: 0, reason: 'not to or from a trusted server' };

    let message = t.payload;
    if (t.tcp) {
      // a message in several segments is put together first (the kernel's dnsplane_tcp_segment)
      const flow = `${t.family}|${t.src}|${t.sport}|${t.dst}|${t.dport}`;
      const { decision, ended } = this.segments.segment(flow, t.seq, t.payload, now);
      this.counters.truncated += ended.truncated;
      this.counters.malformed += ended.malformed;
      if (decision.kind === 'held') return { outcome: 'ignored', writes: NOTHING, overLimit: 0, reason: 'TCP segment held: its message is not whole yet' };
      if (decision.kind === 'whole') {
        message = decision.message;
      } else {
        const length = u16(message, 0);
        if (message.length < 2 || message.length - 2 < length) {
          return { outcome: 'truncated', writes: NOTHING, overLimit: 0, reason: 'TCP segment does not hold the whole message' };
        }
        message = message.subarray(2, 2 + length);
      }
    }
    const header = readHeader(message);
    if (header === undefined) return { outcome: 'malformed', writes: NOTHING, overLimit: 0, reason: 'header cut off' };
    if (message.length > this.maxMessageBytes) message = message.subarray(0, this.maxMessageBytes);

    if (path === 'query') {
      if (header.qr || header.opcode !== 0 || header.qdcount !== 1) {
        return { outcome: 'ignored', writes: NOTHING, overLimit: 0, reason: 'not a standard query with one question' };
      }
      const question = readQuestion(message);
      if (isWireProblem(question)) return { outcome: 'malformed', writes: NOTHING, overLimit: 0, reason: question.reason };
      this.remember(`${t.family}|${t.src}|${t.sport}|${header.id}|${question.name.key}`, now);
      return { outcome: 'query', writes: NOTHING, overLimit: 0 };
    }

    if (!header.qr) return { outcome: 'not_response', writes: NOTHING, overLimit: 0 };
    if (header.qdcount !== 1 || header.rcode !== 0) {
      return { outcome: 'rejected', writes: NOTHING, overLimit: 0, reason: `qdcount ${header.qdcount}, rcode ${header.rcode}` };
    }
    const question = readQuestion(message);
    if (isWireProblem(question)) return { outcome: 'malformed', writes: NOTHING, overLimit: 0, reason: question.reason };
    const expiry = this.queries.get(`${t.family}|${t.dst}|${t.dport}|${header.id}|${question.name.key}`);
    if (expiry === undefined || expiry <= now) return { outcome: 'unmatched_query', writes: NOTHING, overLimit: 0 };

    const decoded = decodeDnsMessage(message);
    if (!decoded.ok) return { outcome: 'malformed', writes: NOTHING, overLimit: 0, reason: decoded.reason };
    const plan = planLearning(decoded, this.domainSets, this.dns, now);
    const writes = plan.entries.map(({ setId, family, address, expiresAt }) => ({ setId, family, address, expiresAt }));
    if (decoded.truncated) {
      return { outcome: 'truncated', writes, overLimit: plan.overLimit, reason: decoded.truncatedReason ?? 'answer section cut' };
    }
    return { outcome: 'parsed', writes, overLimit: plan.overLimit };
  }

  private remember(key: string, now: number): void {
    this.queries.set(key, now + QUERY_LIFETIME_MS);
    if (++this.insertsSinceSweep >= 4096) {
      this.insertsSinceSweep = 0;
      for (const [k, expiry] of this.queries) if (expiry <= now) this.queries.delete(k);
    }
  }
}
