// Parses `nft -j list tables` / `nft -j list table` output (external input: validated with
// zod) into snapshots. Unknown objects and element forms dnsplane never writes are skipped.
import { KernelError } from '@dnsplane/core';
import { z } from 'zod';
import type { NftFamily, NftHook, NftTableRef } from './nft-model.js';
import type { NftBaseChainRef, NftChainSnapshot, NftElementSnapshot, NftRuleSnapshot, NftRuleVerdict, NftRulesetSnapshot, NftSetSnapshot, NftTableSnapshot } from './snapshot.js';

const familySchema = z.enum(['inet', 'ip', 'ip6', 'arp', 'bridge', 'netdev']);
const tableSchema = z.object({ family: familySchema, name: z.string() });
const chainSchema = z.object({
  family: familySchema,
  table: z.string(),
  name: z.string(),
  type: z.string().optional(),
  hook: z.string().optional(),
  prio: z.number().optional(),
  policy: z.string().optional(),
});
const ruleSchema = z.object({
  family: familySchema,
  table: z.string(),
  chain: z.string(),
  handle: z.number(),
  comment: z.string().optional(),
  expr: z.array(z.unknown()).optional(),
});
/**
 * The packets of a rule's `counter` statement. Checked by hand: a listing holds ~5,000 rules of
 * several statements each at scale, and a schema parse per statement cost a noticeable part of
 * every install's listing.
 */
function countedPackets(expr: readonly unknown[] | undefined): number | undefined {
  for (const statement of expr ?? []) {
    if (typeof statement !== 'object' || statement === null || !('counter' in statement)) continue;
    const counter = (statement as { readonly counter: unknown }).counter;
    if (typeof counter !== 'object' || counter === null) continue;
    const { packets, bytes } = counter as { readonly packets?: unknown; readonly bytes?: unknown };
    if (typeof packets === 'number' && typeof bytes === 'number') return packets;
  }
  return undefined;
}
const VERDICTS: readonly NftRuleVerdict[] = ['accept', 'drop', 'return', 'jump', 'goto'];
/** The verdict a rule ends in (its last statement's key), when it is one. */
export function finalVerdict(expr: readonly unknown[] | undefined): NftRuleVerdict | undefined {
  const last = expr?.at(-1);
  if (typeof last !== 'object' || last === null) return undefined;
  return VERDICTS.find((verdict) => verdict in last);
}
const setSchema = z.object({
  family: familySchema,
  table: z.string(),
  name: z.string(),
  type: z.union([z.string(), z.array(z.string())]),
  flags: z.array(z.string()).optional(),
  // checked below with Array.isArray: z.array would walk 100,000s of elements once more
  elem: z.unknown().optional(),
});
const documentSchema = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });

const HOOKS: readonly NftHook[] = ['prerouting', 'input', 'forward', 'output', 'postrouting'];

function parseDocument(text: string, what: string): Array<Record<string, unknown>> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new KernelError(`nft ${what}: output is not JSON`, String(error));
  }
  const parsed = documentSchema.safeParse(json);
  if (!parsed.success) throw new KernelError(`nft ${what}: unexpected output`, parsed.error.message);
  return parsed.data.nftables;
}

export function parseTableList(text: string): NftTableRef[] {
  const tables: NftTableRef[] = [];
  for (const item of parseDocument(text, 'list tables')) {
    if (!('table' in item)) continue;
    const table = tableSchema.safeParse(item.table);
    if (!table.success) throw new KernelError('nft list tables: malformed table', table.error.message);
    if (table.data.family === 'inet' || table.data.family === 'ip' || table.data.family === 'ip6') {
      tables.push({ family: table.data.family, name: table.data.name });
    }
  }
  return tables;
}

const optionalNumber = (value: unknown): value is number | undefined => value === undefined || typeof value === 'number';

/**
 * One set element. Checked by hand rather than with a zod schema: a listing can hold 100,000s
 * of elements, and a schema parse per element dominated status() and exportLearned().
 */
function parseElement(raw: unknown): NftElementSnapshot | undefined {
  if (typeof raw === 'string') return { value: raw };
  if (typeof raw === 'number') return { value: String(raw) };
  if (typeof raw === 'object' && raw !== null && 'elem' in raw) {
    const elem = (raw as { readonly elem: unknown }).elem;
    if (typeof elem !== 'object' || elem === null) return undefined;
    const { val, timeout, expires } = elem as { readonly val?: unknown; readonly timeout?: unknown; readonly expires?: unknown };
    if ((typeof val !== 'string' && typeof val !== 'number') || !optionalNumber(timeout) || !optionalNumber(expires)) return undefined;
    return {
      value: String(val),
      ...(timeout !== undefined ? { timeout } : {}),
      ...(expires !== undefined ? { expires } : {}),
    };
  }
  return undefined; // prefixes, ranges, concatenations: dnsplane never writes those into named sets
}

export function parseTableListing(text: string, table: NftTableRef): NftTableSnapshot {
  return snapshotOf(parseDocument(text, `list table ${table.family} ${table.name}`), table, `list table ${table.family} ${table.name}`);
}

/**
 * `nft -j list ruleset` output: the table's part (undefined when the ruleset holds no such
 * table) and every table's base chains with their rule counts. Of other tables, only base
 * chains are parsed and rules counted; their other objects are skipped unread.
 */
export function parseRulesetListing(text: string, table: NftTableRef): NftRulesetSnapshot {
  const ours = (value: unknown): boolean => {
    if (typeof value !== 'object' || value === null) return false;
    const { family, table: name } = value as { readonly family?: unknown; readonly table?: unknown };
    return family === table.family && name === table.name;
  };
  let found = false;
  const items: Array<Record<string, unknown>> = [];
  const baseChains = new Map<string, { chain: Omit<NftBaseChainRef, 'rules'>; rules: number }>();
  for (const item of parseDocument(text, 'list ruleset')) {
    if ('table' in item) {
      const parsed = tableSchema.safeParse(item.table);
      if (!parsed.success) throw new KernelError('nft list ruleset: malformed table', parsed.error.message);
      if (parsed.data.family === table.family && parsed.data.name === table.name) found = true;
      continue;
    }
    if ('chain' in item) {
      const chain = baseChainOf(item.chain, 'list ruleset');
      if (chain !== undefined) baseChains.set(`${chain.family} ${chain.table} ${chain.name}`, { chain, rules: 0 });
    } else if ('rule' in item && typeof item.rule === 'object' && item.rule !== null) {
      const { family, table: name, chain } = item.rule as { readonly family?: unknown; readonly table?: unknown; readonly chain?: unknown };
      const base = baseChains.get(`${String(family)} ${String(name)} ${String(chain)}`);
      if (base !== undefined) base.rules += 1;
    }
    if (('chain' in item && ours(item.chain)) || ('rule' in item && ours(item.rule)) || ('set' in item && ours(item.set))) items.push(item);
  }
  return {
    table: found ? snapshotOf(items, table, 'list ruleset') : undefined,
    baseChains: [...baseChains.values()].map(({ chain, rules }) => ({ ...chain, rules })),
  };
}

/** `nft -j list chains` output: every table's base chains (no rules in that listing). */
export function parseBaseChainList(text: string): NftBaseChainRef[] {
  const chains: NftBaseChainRef[] = [];
  for (const item of parseDocument(text, 'list chains')) {
    if (!('chain' in item)) continue;
    const chain = baseChainOf(item.chain, 'list chains');
    if (chain !== undefined) chains.push(chain);
  }
  return chains;
}

/** `nft -j list chain …` output: how many rules it lists. */
export function countListedRules(text: string): number {
  return parseDocument(text, 'list chain').filter((item) => 'rule' in item).length;
}

/**
 * A listed chain, when it is a base chain (has a hook); KernelError when malformed. A regular
 * chain (thousands of ours at scale) is passed over before any schema parse.
 */
function baseChainOf(value: unknown, what: string): Omit<NftBaseChainRef, 'rules'> | undefined {
  if (typeof value !== 'object' || value === null || !('hook' in value)) return undefined;
  const chain = chainSchema.safeParse(value);
  if (!chain.success) throw new KernelError(`nft ${what}: malformed chain`, chain.error.message);
  const { family, table, name, type, hook, policy } = chain.data;
  if (hook === undefined) return undefined;
  return { family, table, name, type: type ?? 'filter', hook, policy: policy === 'drop' ? 'drop' : 'accept' };
}

function snapshotOf(items: ReadonlyArray<Record<string, unknown>>, table: NftTableRef, what: string): NftTableSnapshot {
  const chains = new Map<string, { spec: z.infer<typeof chainSchema>; rules: NftRuleSnapshot[] }>();
  const sets: NftSetSnapshot[] = [];
  for (const item of items) {
    if ('chain' in item) {
      const chain = chainSchema.safeParse(item.chain);
      if (!chain.success) throw new KernelError(`nft ${what}: malformed chain`, chain.error.message);
      chains.set(chain.data.name, { spec: chain.data, rules: [] });
    } else if ('rule' in item) {
      const rule = ruleSchema.safeParse(item.rule);
      if (!rule.success) throw new KernelError(`nft ${what}: malformed rule`, rule.error.message);
      const chain = chains.get(rule.data.chain);
      if (chain === undefined) throw new KernelError(`nft ${what}: rule before its chain ${rule.data.chain}`);
      const packets = countedPackets(rule.data.expr);
      const verdict = finalVerdict(rule.data.expr);
      chain.rules.push({
        handle: rule.data.handle,
        ...(rule.data.comment !== undefined ? { comment: rule.data.comment } : {}),
        ...(packets !== undefined ? { packets } : {}),
        ...(verdict !== undefined ? { verdict } : {}),
      });
    } else if ('set' in item) {
      const set = setSchema.safeParse(item.set);
      if (!set.success) throw new KernelError(`nft ${what}: malformed set`, set.error.message);
      const elements: NftElementSnapshot[] = [];
      const rawElements = set.data.elem ?? [];
      if (!Array.isArray(rawElements)) throw new KernelError(`nft ${what}: malformed set`, `${set.data.name}: elem is not a list`);
      for (const raw of rawElements as readonly unknown[]) {
        const element = parseElement(raw);
        if (element !== undefined) elements.push(element);
      }
      sets.push({
        name: set.data.name,
        type: Array.isArray(set.data.type) ? set.data.type.join(' . ') : set.data.type,
        flags: set.data.flags ?? [],
        elements,
      });
    }
  }
  const chainSnapshots: NftChainSnapshot[] = [...chains.values()].map(({ spec, rules }) => {
    const hook = HOOKS.find((h) => h === spec.hook);
    const base =
      hook !== undefined && spec.type === 'filter' && spec.prio !== undefined
        ? { type: 'filter' as const, hook, priority: spec.prio, policy: spec.policy === 'drop' ? ('drop' as const) : ('accept' as const) }
        : undefined;
    return { name: spec.name, ...(base !== undefined ? { base } : {}), rules };
  });
  return { table, chains: chainSnapshots, sets };
}

export function isNftFamily(value: string): value is NftFamily {
  return value === 'inet' || value === 'ip' || value === 'ip6';
}
