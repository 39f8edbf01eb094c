// Desired table + what the kernel holds → ONE transaction. First install creates everything;
// later installs touch only what changed: new sets are added and vanished ones deleted, but a
// set that stays is never flushed or re-created (its learned members survive); a chain whose
// rule fingerprints differ is flushed and refilled; vanished chains are emptied and deleted.
import type { DesiredChain, DesiredTable } from './desired-table.js';
import type { NftBaseChainSpec, NftSet } from './nft-model.js';
import type { NftChainSnapshot, NftTableSnapshot } from './snapshot.js';
import { NftTransaction } from './transaction.js';

function sameBase(a: NftBaseChainSpec | undefined, b: NftBaseChainSpec | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.hook === b.hook && a.priority === b.priority && a.policy === b.policy && a.type === b.type;
}

function sameRules(desired: DesiredChain, actual: NftChainSnapshot): boolean {
  return (
    desired.rules.length === actual.rules.length &&
    desired.rules.every((rule, i) => rule.comment !== undefined && rule.comment === actual.rules[i]?.comment)
  );
}

function sameSet(desired: NftSet, actual: NftTableSnapshot['sets'][number]): boolean {
  return desired.type === actual.type && [...desired.flags].sort().join(',') === [...actual.flags].sort().join(',');
}

export interface InstallPlan {
  readonly transaction: NftTransaction;
  readonly created: boolean;
  readonly addedSets: readonly string[];
  readonly deletedSets: readonly string[];
  readonly replacedChains: readonly string[];
  readonly addedChains: readonly string[];
  readonly deletedChains: readonly string[];
}

export function planInstall(desired: DesiredTable, current: NftTableSnapshot | undefined): InstallPlan {
  const tx = new NftTransaction();
  const table = desired.table;
  if (current === undefined) {
    tx.add({ kind: 'table', table });
    for (const set of desired.sets) tx.add({ kind: 'set', set });
    for (const { chain } of desired.chains) tx.add({ kind: 'chain', chain });
    for (const { rules } of desired.chains) for (const rule of rules) tx.add({ kind: 'rule', rule });
    return {
      transaction: tx,
      created: true,
      addedSets: desired.sets.map((s) => s.name),
      deletedSets: [],
      replacedChains: [],
      addedChains: desired.chains.map((c) => c.chain.name),
      deletedChains: [],
    };
  }

  const actualChains = new Map(current.chains.map((c) => [c.name, c]));
  const actualSets = new Map(current.sets.map((s) => [s.name, s]));
  const desiredChainNames = new Set(desired.chains.map((c) => c.chain.name));
  const desiredSetNames = new Set(desired.sets.map((s) => s.name));

  const addedSets = desired.sets.filter((s) => !actualSets.has(s.name));
  // A set of the wrong type cannot be kept (never happens with dnsplane's names): replace it.
  const retypedSets = desired.sets.filter((s) => {
    const actual = actualSets.get(s.name);
    return actual !== undefined && !sameSet(s, actual);
  });
  const deletedSets = current.sets.filter((s) => !desiredSetNames.has(s.name)).map((s) => s.name);

  const addedChains: DesiredChain[] = [];
  const replacedChains: DesiredChain[] = [];
  const rebuiltChains: DesiredChain[] = []; // base chain with a different hook: delete + add
  for (const desiredChain of desired.chains) {
    const actual = actualChains.get(desiredChain.chain.name);
    if (actual === undefined) addedChains.push(desiredChain);
    else if (!sameBase(desiredChain.chain.base, actual.base)) rebuiltChains.push(desiredChain);
    else if (!sameRules(desiredChain, actual) || retypedSets.length > 0) replacedChains.push(desiredChain);
  }
  const deletedChains = current.chains.filter((c) => !desiredChainNames.has(c.name)).map((c) => c.name);

  // 1. Empty every chain whose rules go away, so nothing references what is deleted later.
  for (const { chain } of [...replacedChains, ...rebuiltChains]) tx.flush({ kind: 'chain', chain });
  for (const name of deletedChains) tx.flush({ kind: 'chain', chain: { table, name } });
  for (const { chain } of rebuiltChains) tx.delete({ kind: 'chain', chain });
  for (const set of retypedSets) tx.delete({ kind: 'set', set });
  // 2. New objects, then the rules that reference them.
  for (const set of [...addedSets, ...retypedSets]) tx.add({ kind: 'set', set });
  for (const { chain } of [...addedChains, ...rebuiltChains]) tx.add({ kind: 'chain', chain });
  for (const { rules } of [...addedChains, ...rebuiltChains, ...replacedChains]) {
    for (const rule of rules) tx.add({ kind: 'rule', rule });
  }
  // 3. What vanished, now unreferenced.
  for (const name of deletedChains) tx.delete({ kind: 'chain', chain: { table, name } });
  for (const name of deletedSets) {
    tx.delete({ kind: 'set', set: { table, name, type: 'ipv4_addr', flags: [] } });
  }

  return {
    transaction: tx,
    created: false,
    addedSets: [...addedSets, ...retypedSets].map((s) => s.name),
    deletedSets,
    replacedChains: replacedChains.map((c) => c.chain.name),
    addedChains: [...addedChains, ...rebuiltChains].map((c) => c.chain.name),
    deletedChains,
  };
}

/**
 * A first install in two transactions: `inert` — the table, its sets and its regular chains
 * with their rules, which no packet reaches (only base chains sit on netfilter hooks) — and
 * `hooks` — the base chains with their rules, from which enforcement starts. The inert part
 * can go in while the kernel side still loads; the hooks only once it is in place.
 */
export function planCreation(desired: DesiredTable): { readonly inert: NftTransaction; readonly hooks: NftTransaction } {
  const inert = new NftTransaction().add({ kind: 'table', table: desired.table });
  const hooks = new NftTransaction();
  for (const set of desired.sets) inert.add({ kind: 'set', set });
  const regular = desired.chains.filter((c) => c.chain.base === undefined);
  const base = desired.chains.filter((c) => c.chain.base !== undefined);
  for (const { chain } of regular) inert.add({ kind: 'chain', chain });
  for (const { rules } of regular) for (const rule of rules) inert.add({ kind: 'rule', rule });
  for (const { chain } of base) hooks.add({ kind: 'chain', chain });
  for (const { rules } of base) for (const rule of rules) hooks.add({ kind: 'rule', rule });
  return { inert, hooks };
}
