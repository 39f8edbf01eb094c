// The handle every nft user in dnsplane goes through: apply one transaction atomically and
// read tables back. Implemented over libnftables/nft JSON (json-handle.ts) and in memory for
// unit tests (fake-handle.ts).
import type { NftTableRef } from './nft-model.js';
import type { NftBaseChainRef, NftRulesetSnapshot, NftSetSnapshot, NftTableSnapshot } from './snapshot.js';
import type { NftTransaction } from './transaction.js';

export interface NftHandle {
  /** Apply every operation or none (throws KernelError and changes nothing on failure). */
  apply(transaction: NftTransaction): Promise<void>;
  /** Validate against the kernel without committing (nft -c / dry run). */
  check(transaction: NftTransaction): Promise<void>;
  listTables(): Promise<NftTableRef[]>;
  /**
   * The table's chains, rules and sets — with their elements unless `elements: false` (cheap:
   * what a re-install needs); undefined when the table does not exist.
   */
  listTable(table: NftTableRef, options?: { readonly elements?: boolean }): Promise<NftTableSnapshot | undefined>;
  /**
   * One terse listing of the namespace's ruleset (no set elements): the table as listTable
   * with `elements: false` gives it, and every table's base chains with their rule counts.
   */
  listRuleset(table: NftTableRef): Promise<NftRulesetSnapshot>;
  /** Every table's base chains, without rules (`list chains`: cheap at any scale). */
  listBaseChains(): Promise<NftBaseChainRef[]>;
  /** The rules of one chain of any table (`list chain`); undefined when it does not exist. */
  countRules(chain: Pick<NftBaseChainRef, 'family' | 'table' | 'name'>): Promise<number | undefined>;
  /** One set with its elements; undefined when the table does not exist. */
  listSet(table: NftTableRef, set: string): Promise<NftSetSnapshot | undefined>;
}

/** pino-compatible subset: the driver logs through whatever the agent injects. */
export interface NftLogger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

export const silentLogger: NftLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
