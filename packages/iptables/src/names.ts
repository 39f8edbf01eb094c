// Deterministic names for our chains and LOG prefixes, within iptables' length limits.
// A name that fits and uses only plain characters is kept as written; anything else becomes
// a readable head plus `_` and 8 hex digits of its SHA-256. Plain names never contain `_`,
// so a kept name can never equal a hashed one.
import { createHash } from 'node:crypto';
import { CHAIN_PREFIX, MAX_CHAIN_NAME, MAX_LOG_PREFIX } from './model.js';

const PLAIN = /^[A-Za-z0-9.-]+$/;
const HASH_HEX = 8;

function hashHex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, HASH_HEX);
}

/** `text` if it fits in `room` characters and is plain; otherwise `<head>_<hash>` of exactly `room`. */
export function fitName(text: string, room: number): string {
  if (text.length > 0 && text.length <= room && PLAIN.test(text)) return text;
  const headRoom = Math.max(0, room - HASH_HEX - 1);
  const head = text.replace(/[^A-Za-z0-9.-]/g, '').slice(0, headRoom);
  return `${head}_${hashHex(text)}`;
}

/** Kinds of per-object chains; the two letters follow the prefix. */
export type ChainKind =
  /** Policy rules, ingress direction. */
  | 'PI'
  /** Policy rules, egress direction. */
  | 'PE'
  /** To workload: an endpoint's ingress policies (traffic leaving the host by its interface). */
  | 'TW'
  /** From workload: an endpoint's egress policies (traffic entering the host by its interface). */
  | 'FW'
  /** To host: a host endpoint's ingress policies (INPUT). */
  | 'TH'
  /** From host: a host endpoint's egress policies (OUTPUT). */
  | 'FH'
  /** Sub-chain of one rule with several notNets (RETURN for each, then mark "matched"). */
  | 'NN';

/** `DNSPLANE-<kind>-<name>`, at most 28 characters. */
export function objectChainName(kind: ChainKind, name: string): string {
  const head = `${CHAIN_PREFIX}${kind}-`;
  return head + fitName(name, MAX_CHAIN_NAME - head.length);
}

/**
 * `dnsplane <policy> <rule>: ` within 29 characters; `rule` is `i<index>` (ingress) or
 * `e<index>` (egress). A long policy name is shortened to a head and 4 hex digits of its hash.
 */
export function logPrefix(policy: string, rule: string): string {
  const fixed = `dnsplane  ${rule}: `.length;
  const room = MAX_LOG_PREFIX - fixed;
  const clean = policy.replace(/[^A-Za-z0-9._-]/g, '');
  let shown = clean;
  if (clean !== policy || clean.length > room) {
    const hash = hashHex(policy).slice(0, 4);
    shown = `${clean.slice(0, Math.max(0, room - 5))}~${hash}`;
  }
  return `dnsplane ${shown} ${rule}: `;
}
