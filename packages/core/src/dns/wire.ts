// The wire-level walk of a DNS message, implementing the parser semantics of the kernel parser
// exactly (see packages/core/README.md, "DNS reference"). dns-packet is deliberately not used
// here: it follows forward pointers and does not bound names the way the kernel does.
import type { IpFamily } from '../desired-state.js';
import { formatIpv4, formatIpv6 } from './ip.js';

export const DNS_HEADER_LENGTH = 12;
export const MAX_WIRE_LABEL_LENGTH = 63;
/** Longest name in wire form (length bytes and the root byte included). */
export const MAX_WIRE_NAME_LENGTH = 255;
/** Compression pointers followed per name; the 17th is malformed. */
export const MAX_POINTER_HOPS = 16;
/** Answer records walked at most. */
export const MAX_ANSWERS_WALKED = 64;
/** Names a chain holds at most (the question included). */
export const MAX_CHAIN_NAMES = 8;

export const TYPE_A = 1;
export const TYPE_CNAME = 5;
export const TYPE_AAAA = 28;
export const CLASS_IN = 1;

export interface DnsHeader {
  readonly id: number;
  readonly qr: boolean;
  readonly opcode: number;
  readonly aa: boolean;
  readonly tc: boolean;
  readonly rd: boolean;
  readonly ra: boolean;
  readonly rcode: number;
  readonly qdcount: number;
  readonly ancount: number;
  readonly nscount: number;
  readonly arcount: number;
}

/** A name read from the wire: labels lower-cased (ASCII letters only), bytes as latin1 characters. */
export interface WireName {
  readonly labels: readonly string[];
  /** Unambiguous comparison key (length-prefixed lower-cased labels). */
  readonly key: string;
  /** Offset just after the name's inline part (after the first pointer, or the root byte). */
  readonly end: number;
  /** Compression pointers followed. */
  readonly hops: number;
  /** Wire length: labels, their length bytes and the root byte. */
  readonly wireLength: number;
}

/**
 * Names already read in one message, by the offset they start at. Reading through a pointer to
 * a cached offset gives exactly what reading the bytes again would (a cached name read to its
 * end without a problem, so only the hop and length limits can fail, and both are malformed).
 */
export type NameCache = Map<number, WireName>;

/** Why a walk stopped: a structural error, or the bytes ran out. */
export interface WireProblem {
  readonly kind: 'malformed' | 'cut';
  readonly reason: string;
  readonly offset: number;
}

export function isWireProblem<T extends object>(value: T | WireProblem): value is WireProblem {
  return 'kind' in value;
}

export function readHeader(msg: Uint8Array): DnsHeader | undefined {
  if (msg.length < DNS_HEADER_LENGTH) return undefined;
  const b2 = msg[2] ?? 0;
  const b3 = msg[3] ?? 0;
  const u16 = (at: number): number => ((msg[at] ?? 0) << 8) | (msg[at + 1] ?? 0);
  return {
    id: u16(0),
    qr: (b2 & 0x80) !== 0,
    opcode: (b2 >> 3) & 0x0f,
    aa: (b2 & 0x04) !== 0,
    tc: (b2 & 0x02) !== 0,
    rd: (b2 & 0x01) !== 0,
    ra: (b3 & 0x80) !== 0,
    rcode: b3 & 0x0f,
    qdcount: u16(4),
    ancount: u16(6),
    nscount: u16(8),
    arcount: u16(10),
  };
}

/** Scratch for one label's lower-cased bytes (labels are at most 63 bytes). */
const labelBytes = new Uint8Array(MAX_WIRE_LABEL_LENGTH);

/**
 * Reads a (possibly compressed) name at `offset`. Rules: label length bytes 0x40–0xBF are bad
 * label types; a pointer (0xC0) must point strictly below its own offset; at most 16 pointers;
 * the wire length (labels + length bytes + root) is at most 255, checked before the label's
 * bytes are looked for; any read past the end of the message is a cut.
 */
export function readName(msg: Uint8Array, offset: number, cache?: NameCache): WireName | WireProblem {
  const labels: string[] = [];
  let key = '';
  let pos = offset;
  let end = -1;
  let hops = 0;
  let wireLength = 1;
  const length = msg.length;
  for (;;) {
    if (pos >= length) return { kind: 'cut', reason: 'name runs past the end of the message', offset: pos };
    const b = msg[pos] ?? 0;
    if (b >= 0xc0) {
      if (pos + 1 >= length) return { kind: 'cut', reason: 'pointer runs past the end of the message', offset: pos };
      const target = ((b & 0x3f) << 8) | (msg[pos + 1] ?? 0);
      if (target >= pos) return { kind: 'malformed', reason: `compression pointer at ${pos} to ${target} does not point backwards`, offset: pos };
      hops++;
      if (hops > MAX_POINTER_HOPS) return { kind: 'malformed', reason: `more than ${MAX_POINTER_HOPS} compression pointers`, offset: pos };
      if (end < 0) end = pos + 2;
      const known = cache?.get(target);
      if (known !== undefined) {
        if (hops + known.hops > MAX_POINTER_HOPS) return { kind: 'malformed', reason: `more than ${MAX_POINTER_HOPS} compression pointers`, offset: pos };
        if (wireLength + known.wireLength - 1 > MAX_WIRE_NAME_LENGTH) return { kind: 'malformed', reason: `name longer than ${MAX_WIRE_NAME_LENGTH} bytes`, offset: pos };
        const name: WireName = { labels: labels.concat(known.labels), key: key + known.key, end, hops: hops + known.hops, wireLength: wireLength + known.wireLength - 1 };
        cache?.set(offset, name);
        return name;
      }
      pos = target;
      continue;
    }
    if (b > MAX_WIRE_LABEL_LENGTH) return { kind: 'malformed', reason: `bad label type or length 0x${b.toString(16)}`, offset: pos };
    if (b === 0) {
      if (end < 0) end = pos + 1;
      const name: WireName = { labels, key, end, hops, wireLength };
      cache?.set(offset, name);
      return name;
    }
    wireLength += b + 1;
    if (wireLength > MAX_WIRE_NAME_LENGTH) return { kind: 'malformed', reason: `name longer than ${MAX_WIRE_NAME_LENGTH} bytes`, offset: pos };
    if (pos + 1 + b > length) return { kind: 'cut', reason: 'label runs past the end of the message', offset: pos };
    for (let i = 0; i < b; i++) {
      const c = msg[pos + 1 + i] ?? 0;
      labelBytes[i] = c >= 0x41 && c <= 0x5a ? c + 0x20 : c;
    }
    const label = String.fromCharCode.apply(null, labelBytes.subarray(0, b) as unknown as number[]);
    labels.push(label);
    key += String.fromCharCode(b) + label;
    pos += 1 + b;
  }
}

const PLAIN_LABEL = /^[\x21-\x2d\x2f-\x5b\x5d-\x7e]*$/;

/** Presentation text of wire labels: dots between labels, `.` `\` and non-printable bytes escaped. */
export function nameText(labels: readonly string[]): string {
  if (labels.length === 0) return '.';
  return labels
    .map((label) => {
      if (PLAIN_LABEL.test(label)) return label;
      let out = '';
      for (let i = 0; i < label.length; i++) {
        const c = label.charCodeAt(i);
        if (c === 0x2e || c === 0x5c) out += `\\${label[i]}`;
        else if (c <= 0x20 || c >= 0x7f) out += `\\${c.toString().padStart(3, '0')}`;
        else out += label[i];
      }
      return out;
    })
    .join('.');
}

export interface WireQuestion {
  readonly name: WireName;
  readonly type: number;
  readonly class: number;
  /** Offset of the first answer record. */
  readonly end: number;
}

/** Reads the single question right after the header; any problem (a cut too) is malformed. */
export function readQuestion(msg: Uint8Array): WireQuestion | WireProblem {
  const name = readName(msg, DNS_HEADER_LENGTH);
  if (isWireProblem(name)) return { kind: 'malformed', reason: `question: ${name.reason}`, offset: name.offset };
  if (name.end + 4 > msg.length) return { kind: 'malformed', reason: 'question: type and class cut off', offset: name.end };
  const type = ((msg[name.end] ?? 0) << 8) | (msg[name.end + 1] ?? 0);
  const cls = ((msg[name.end + 2] ?? 0) << 8) | (msg[name.end + 3] ?? 0);
  return { name, type, class: cls, end: name.end + 4 };
}

export interface WireAddress {
  readonly family: IpFamily;
  readonly address: string;
  readonly ttl: number;
  /** Owner name (a chain member) in presentation text. */
  readonly owner: string;
}

export interface AnswerWalk {
  /** Chain names in the order they joined, the question first. */
  readonly chain: readonly WireName[];
  /** Candidate addresses in packet order. */
  readonly addresses: readonly WireAddress[];
  /** Complete records walked. */
  readonly records: number;
  /** Set when the bytes ran out inside the answer section (the walked records still count). */
  readonly truncated?: WireProblem;
}

/**
 * Walks at most min(ANCOUNT, 64) answer records from `offset` in one pass. Returns a malformed
 * problem for any structural error (the whole message then teaches nothing).
 */
export function walkAnswers(msg: Uint8Array, offset: number, ancount: number, question: WireName): AnswerWalk | WireProblem {
  const chain: WireName[] = [question];
  const cache: NameCache = new Map([[DNS_HEADER_LENGTH, question]]);
  /** Presentation text of chain members, computed once each. */
  const texts = new Map<string, string>();
  const textOf = (name: WireName): string => {
    let text = texts.get(name.key);
    if (text === undefined) {
      text = nameText(name.labels);
      texts.set(name.key, text);
    }
    return text;
  };
  const addresses: WireAddress[] = [];
  const length = msg.length;
  const limit = Math.min(ancount, MAX_ANSWERS_WALKED);
  let pos = offset;
  let records = 0;
  for (let i = 0; i < limit; i++) {
    const owner = readName(msg, pos, cache);
    if (isWireProblem(owner)) {
      if (owner.kind === 'malformed') return { kind: 'malformed', reason: `answer ${i}: ${owner.reason}`, offset: owner.offset };
      return { chain, addresses, records, truncated: { kind: 'cut', reason: `answer ${i}: ${owner.reason}`, offset: owner.offset } };
    }
    pos = owner.end;
    if (pos + 10 > length) {
      return { chain, addresses, records, truncated: { kind: 'cut', reason: `answer ${i}: record header cut off`, offset: pos } };
    }
    const type = ((msg[pos] ?? 0) << 8) | (msg[pos + 1] ?? 0);
    const cls = ((msg[pos + 2] ?? 0) << 8) | (msg[pos + 3] ?? 0);
    const ttl = (((msg[pos + 4] ?? 0) << 24) | ((msg[pos + 5] ?? 0) << 16) | ((msg[pos + 6] ?? 0) << 8) | (msg[pos + 7] ?? 0)) >>> 0;
    const rdlength = ((msg[pos + 8] ?? 0) << 8) | (msg[pos + 9] ?? 0);
    if (cls === CLASS_IN && type === TYPE_A && rdlength !== 4) {
      return { kind: 'malformed', reason: `answer ${i}: A record with rdlength ${rdlength}`, offset: pos };
    }
    if (cls === CLASS_IN && type === TYPE_AAAA && rdlength !== 16) {
      return { kind: 'malformed', reason: `answer ${i}: AAAA record with rdlength ${rdlength}`, offset: pos };
    }
    const rdata = pos + 10;
    if (rdata + rdlength > length) {
      return { chain, addresses, records, truncated: { kind: 'cut', reason: `answer ${i}: rdata cut off`, offset: rdata } };
    }
    if (cls === CLASS_IN && (type === TYPE_A || type === TYPE_AAAA || type === TYPE_CNAME)) {
      const member = chain.find((name) => name.key === owner.key);
      if (member !== undefined) {
        if (type === TYPE_CNAME) {
          const target = readName(msg, rdata, cache);
          if (isWireProblem(target)) return { kind: 'malformed', reason: `answer ${i}: CNAME target: ${target.reason}`, offset: target.offset };
          if (target.end !== rdata + rdlength) {
            return { kind: 'malformed', reason: `answer ${i}: CNAME target does not fill its rdata`, offset: rdata };
          }
          if (chain.length < MAX_CHAIN_NAMES && !chain.some((name) => name.key === target.key)) chain.push(target);
        } else if (type === TYPE_A) {
          addresses.push({ family: 4, address: formatIpv4(msg, rdata), ttl, owner: textOf(member) });
        } else {
          addresses.push({ family: 6, address: formatIpv6(msg, rdata), ttl, owner: textOf(member) });
        }
      }
    }
    pos = rdata + rdlength;
    records++;
  }
  return { chain, addresses, records };
}
