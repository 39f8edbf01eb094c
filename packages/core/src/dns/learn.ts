// From a decoded DNS response and the domain table to the (domain set, address, expiry)
// entries it teaches. Pure: the caller decides whether the response is trusted and asked for.
import type { DnsSettings, DomainSet } from '../desired-state.js';
import { matchesLabels } from '../domain-pattern.js';
import type { LearnedEntry } from '../learned.js';
import type { DecodeResult } from './decoder.js';

/** Ids (ascending) of the domain sets with a pattern matching any of the names. */
export function matchingDomainSetIds(
  names: readonly (readonly string[])[],
  domainSets: readonly DomainSet[],
): number[] {
  const ids: number[] = [];
  for (const set of domainSets) {
    if (set.patterns.some((pattern) => names.some((labels) => matchesLabels(pattern, labels)))) ids.push(set.id);
  }
  return ids.sort((a, b) => a - b);
}

/** Expiry in ms: now + max(ttl, minTTL) + extraTTL seconds. */
export function learnedExpiry(ttl: number, dns: DnsSettings, nowMs: number): number {
  return nowMs + (Math.max(ttl, dns.minTTL) + dns.extraTTL) * 1000;
}

export interface LearningPlan {
  /** One entry per credited address per matching set: addresses in packet order, sets by id. */
  readonly entries: LearnedEntry[];
  /** Candidate addresses beyond maxAddressesPerName (0 when no set matched). */
  readonly overLimit: number;
  readonly setIds: readonly number[];
}

export function planLearning(
  decoded: DecodeResult,
  domainSets: readonly DomainSet[],
  dns: DnsSettings,
  nowMs: number,
): LearningPlan {
  const none: LearningPlan = { entries: [], overLimit: 0, setIds: [] };
  if (!decoded.ok || !decoded.flags.qr || decoded.flags.rcode !== 0 || decoded.question === undefined) return none;
  if (decoded.addresses.length === 0) return none;
  const setIds = matchingDomainSetIds(decoded.chain.map((name) => name.labels), domainSets);
  if (setIds.length === 0) return none;
  const credited = decoded.addresses.slice(0, Math.max(0, dns.maxAddressesPerName));
  const entries: LearnedEntry[] = [];
  for (const candidate of credited) {
    const expiresAt = learnedExpiry(candidate.ttl, dns, nowMs);
    for (const setId of setIds) {
      entries.push({ setId, family: candidate.family, address: candidate.address, expiresAt, name: decoded.question.name });
    }
  }
  return { entries, overLimit: decoded.addresses.length - credited.length, setIds };
}

/**
 * The entries a response teaches: every A/AAAA address reached through the CNAME chain, for
 * every domain set matching any chain name, at most `maxAddressesPerName` addresses (the first
 * in packet order). Nothing for queries, non-zero rcodes, malformed messages or messages
 * without exactly one question.
 */
export function learnFromResponse(
  decoded: DecodeResult,
  domainSets: readonly DomainSet[],
  dns: DnsSettings,
  nowMs: number,
): LearnedEntry[] {
  return planLearning(decoded, domainSets, dns, nowMs).entries;
}
