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
