// decodeDnsMessage: one DNS message (a UDP payload, or one message of a TCP stream) to a typed
// result. Never throws: malformed input is a `{ ok: false }` result with a reason.
import type { IpFamily } from '../desired-state.js';
import {
  isWireProblem,
  nameText,
  readHeader,
  readQuestion,
  walkAnswers,
  type DnsHeader,
} from './wire.js';

export interface DnsFlags {
  /** Response (QR=1). */
  readonly qr: boolean;
  readonly opcode: number;
  readonly aa: boolean;
  /** Truncated by the server (TC=1): the client retries over TCP. */
  readonly tc: boolean;
  readonly rd: boolean;
  readonly ra: boolean;
  readonly rcode: number;
}

export interface DnsQuestion {
  /** Lower-cased presentation text, no trailing dot ("." for the root). */
  readonly name: string;
  /** Lower-cased labels as read from the wire (bytes as latin1 characters). */
  readonly labels: readonly string[];
  readonly type: number;
  readonly class: number;
}

export interface DnsChainName {
  readonly name: string;
  readonly labels: readonly string[];
}

export interface DnsAnswerAddress {
  readonly family: IpFamily;
  /** Canonical text ("198.18.0.1", "fd00::1"). */
  readonly address: string;
  /** Seconds, as on the wire (unsigned 32 bits). */
  readonly ttl: number;
  /** The chain name that owns the record. */
  readonly owner: string;
}

export interface DecodedDnsMessage {
  readonly ok: true;
  readonly id: number;
  readonly flags: DnsFlags;
  readonly counts: { readonly question: number; readonly answer: number; readonly authority: number; readonly additional: number };
  /** Present when the message has exactly one question; otherwise nothing past the header is read. */
  readonly question?: DnsQuestion;
  /** The question name, then each CNAME target reached from it, in order (at most 8). */
  readonly chain: readonly DnsChainName[];
  /** A/AAAA addresses owned by chain names, in packet order. */
  readonly addresses: readonly DnsAnswerAddress[];
  /** Complete answer records walked (at most 64). */
  readonly answersWalked: number;
  /** The answer section ended early (counts claim more, or a record is cut); what came before counts. */
  readonly truncated: boolean;
  /** Why the walk stopped early, when `truncated`. */
  readonly truncatedReason?: string;
}

export interface DnsDecodeFailure {
  readonly ok: false;
  readonly error: 'malformed';
  readonly reason: string;
  /** Byte offset in the message where the problem was found. */
  readonly offset: number;
  /** The transaction id, when the header was complete. */
  readonly id?: number;
}

export type DecodeResult = DecodedDnsMessage | DnsDecodeFailure;

export const isDnsDecodeFailure = (r: DecodeResult): r is DnsDecodeFailure => !r.ok;

function flagsOf(header: DnsHeader): DnsFlags {
  return {
    qr: header.qr,
    opcode: header.opcode,
    aa: header.aa,
    tc: header.tc,
    rd: header.rd,
    ra: header.ra,
    rcode: header.rcode,
  };
}

/**
 * Decodes one DNS message. The header, the question and every walked answer record must be
 * well-formed (else `{ ok: false }`); running out of bytes inside the answer section gives
 * `truncated: true` with the complete records before the cut.
 */
export function decodeDnsMessage(bytes: Uint8Array): DecodeResult {
  const header = readHeader(bytes);
  if (header === undefined) {
    return { ok: false, error: 'malformed', reason: `header cut off (${bytes.length} of 12 bytes)`, offset: bytes.length };
  }
  const flags = flagsOf(header);
  const counts = { question: header.qdcount, answer: header.ancount, authority: header.nscount, additional: header.arcount };
  if (header.qdcount !== 1) {
    return { ok: true, id: header.id, flags, counts, chain: [], addresses: [], answersWalked: 0, truncated: false };
  }
  const question = readQuestion(bytes);
  if (isWireProblem(question)) {
    return { ok: false, error: 'malformed', reason: question.reason, offset: question.offset, id: header.id };
  }
  const walk = walkAnswers(bytes, question.end, header.ancount, question.name);
  if (isWireProblem(walk)) {
    return { ok: false, error: 'malformed', reason: walk.reason, offset: walk.offset, id: header.id };
  }
  const chain: DnsChainName[] = [];
  for (const name of walk.chain) chain.push({ name: nameText(name.labels), labels: name.labels });
  const result: DecodedDnsMessage = {
    ok: true,
    id: header.id,
    flags,
    counts,
    question: { name: chain[0]?.name ?? '.', labels: question.name.labels, type: question.type, class: question.class },
    chain,
    addresses: walk.addresses,
    answersWalked: walk.records,
    truncated: walk.truncated !== undefined,
  };
  return walk.truncated === undefined ? result : { ...result, truncatedReason: walk.truncated.reason };
}
