// What the kernel holds for one table, as read back from `nft -j list table`: just enough
// to diff against the desired objects (chains and their rule fingerprints, sets and their
// elements with expiries).
import type { NftBaseChainSpec, NftTableRef } from './nft-model.js';

/** The verdict statements a rule can end in. */
export type NftRuleVerdict = 'accept' | 'drop' | 'return' | 'jump' | 'goto';

export interface NftRuleSnapshot {
  readonly handle: number;
  readonly comment?: string;
  /** Packets counted by the rule's `counter` statement, when it has one. */
  readonly packets?: number;
  /** The verdict it ends in, when it ends in one. */
  readonly verdict?: NftRuleVerdict;
}

export interface NftChainSnapshot {
  readonly name: string;
  readonly base?: NftBaseChainSpec;
  readonly rules: readonly NftRuleSnapshot[];
}

export interface NftElementSnapshot {
  readonly value: string;
  /** The element's timeout, whole seconds; absent = permanent. */
  readonly timeout?: number;
  /** Seconds left (nft prints whole seconds, truncated). */
  readonly expires?: number;
}

export interface NftSetSnapshot {
  readonly name: string;
  readonly type: string;
  readonly flags: readonly string[];
  readonly elements: readonly NftElementSnapshot[];
}

export interface NftTableSnapshot {
  readonly table: NftTableRef;
  readonly chains: readonly NftChainSnapshot[];
  readonly sets: readonly NftSetSnapshot[];
}

/** A base chain of any table in the namespace (the dnsplane table's too), as nft lists it. */
export interface NftBaseChainRef {
  /** Any nft family (`ip`, `ip6`, `inet`, `bridge`, `netdev`, `arp`). */
  readonly family: string;
  readonly table: string;
  readonly name: string;
  /** The chain type (`filter`, `nat`, `route`). */
  readonly type: string;
  /** The netfilter hook (`forward`, `prerouting`, …). */
  readonly hook: string;
  readonly policy: 'accept' | 'drop';
  /** Its rules; undefined when the listing had none (`list chains`). */
  readonly rules?: number;
}

/** A terse ruleset listing: the dnsplane table (undefined when absent) and every base chain. */
export interface NftRulesetSnapshot {
  readonly table: NftTableSnapshot | undefined;
  readonly baseChains: readonly NftBaseChainRef[];
}
