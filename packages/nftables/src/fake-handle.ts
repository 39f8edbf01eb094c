// An in-memory NftHandle for unit tests: applies transactions with the kernel's semantics
// that the driver depends on (all-or-nothing, ENOENT on deleting what is missing, EBUSY on
// deleting what a rule still references, element timeouts that only change when a re-add
// carries a DIFFERENT timeout or an `expires` (kernels since 6.12; `elementUpdates: false`
// models the older ones, which ignore a re-add), expired elements invisible). The real kernel
// is covered by the *.kernel.test.ts files.
import { KernelError, systemClock, type Clock } from '@dnsplane/core';
import type { NftHandle } from './handle.js';
import type { NftBaseChainSpec, NftRule, NftSet, NftStatement, NftTableRef } from './nft-model.js';
import type { NftBaseChainRef, NftRulesetSnapshot, NftSetSnapshot, NftTableSnapshot } from './snapshot.js';
import { finalVerdict } from './parse-listing.js';
import type { NftOperation, NftTransaction } from './transaction.js';

interface FakeRule {
  readonly handle: number;
  readonly rule: NftRule;
}
interface FakeChain {
  readonly base?: NftBaseChainSpec;
  rules: FakeRule[];
}
interface FakeElement {
  readonly timeout?: number;
  /** ms since epoch; absent = permanent */
  readonly expiresAt?: number;
}
interface FakeSet {
  readonly set: NftSet;
  elements: Map<string, FakeElement>;
}
interface FakeTable {
  readonly ref: NftTableRef;
  chains: Map<string, FakeChain>;
  sets: Map<string, FakeSet>;
}
interface FakeState {
  tables: Map<string, FakeTable>;
  nextHandle: number;
}

const tableKey = (t: { readonly family: string; readonly name: string }): string => `${t.family} ${t.name}`;

function cloneState(state: FakeState): FakeState {
  const tables = new Map<string, FakeTable>();
  for (const [key, table] of state.tables) {
    tables.set(key, {
      ref: table.ref,
      chains: new Map([...table.chains].map(([n, c]) => [n, { ...c, rules: [...c.rules] }])),
      sets: new Map([...table.sets].map(([n, s]) => [n, { set: s.set, elements: new Map(s.elements) }])),
    });
  }
  return { tables, nextHandle: state.nextHandle };
}

function jumpTargets(expr: readonly NftStatement[]): string[] {
  const targets: string[] = [];
  for (const statement of expr) {
    if ('jump' in statement) targets.push(statement.jump.target);
    if ('goto' in statement) targets.push(statement.goto.target);
  }
  return targets;
}

function setReferences(expr: readonly NftStatement[]): string[] {
  const names: string[] = [];
  for (const statement of expr) {
    if ('match' in statement && typeof statement.match.right === 'string' && statement.match.right.startsWith('@')) {
      names.push(statement.match.right.slice(1));
    }
  }
  return names;
}

export class FakeNftHandle implements NftHandle {
  #state: FakeState = { tables: new Map(), nextHandle: 1 };
  /** Every transaction that was applied successfully, in order. */
  readonly applied: NftTransaction[] = [];

  /** Whether a re-add updates an existing element's timeout and expiry (kernel ≥ 6.12). */
  readonly elementUpdates: boolean;

  constructor(
    readonly clock: Clock = systemClock,
    options: { readonly elementUpdates?: boolean } = {},
  ) {
    this.elementUpdates = options.elementUpdates ?? true;
  }

  async apply(transaction: NftTransaction): Promise<void> {
    const next = cloneState(this.#state);
    for (const operation of transaction.operations) this.#applyOperation(next, operation);
    this.#state = next;
    this.applied.push(transaction);
  }

  async check(transaction: NftTransaction): Promise<void> {
    const scratch = cloneState(this.#state);
    for (const operation of transaction.operations) this.#applyOperation(scratch, operation);
  }

  async listTables(): Promise<NftTableRef[]> {
    return [...this.#state.tables.values()].map((t) => t.ref);
  }

  async listSet(ref: NftTableRef, set: string): Promise<NftSetSnapshot | undefined> {
    return (await this.listTable(ref))?.sets.find((s) => s.name === set);
  }

  async listRuleset(ref: NftTableRef): Promise<NftRulesetSnapshot> {
    return { table: await this.listTable(ref, { elements: false }), baseChains: this.#baseChains(true) };
  }

  async listBaseChains(): Promise<NftBaseChainRef[]> {
    return this.#baseChains(false);
  }

  async countRules(chain: Pick<NftBaseChainRef, 'family' | 'table' | 'name'>): Promise<number | undefined> {
    return this.#state.tables.get(tableKey({ family: chain.family, name: chain.table }))?.chains.get(chain.name)?.rules.length;
  }

  #baseChains(withRules: boolean): NftBaseChainRef[] {
    return [...this.#state.tables.values()].flatMap((table) =>
      [...table.chains].flatMap(([name, chain]) =>
        chain.base === undefined
          ? []
          : [{ family: table.ref.family, table: table.ref.name, name, type: chain.base.type, hook: chain.base.hook, policy: chain.base.policy, ...(withRules ? { rules: chain.rules.length } : {}) }],
      ),
    );
  }

  async listTable(ref: NftTableRef, options: { readonly elements?: boolean } = {}): Promise<NftTableSnapshot | undefined> {
    const table = this.#state.tables.get(tableKey(ref));
    if (table === undefined) return undefined;
    const now = this.clock.now();
    const withElements = options.elements !== false;
    return {
      table: ref,
      chains: [...table.chains].map(([name, chain]) => ({
        name,
        ...(chain.base !== undefined ? { base: chain.base } : {}),
        rules: chain.rules.map((r) => {
          const verdict = finalVerdict(r.rule.expr);
          return {
            handle: r.handle,
            ...(r.rule.comment !== undefined ? { comment: r.rule.comment } : {}),
            ...(verdict !== undefined ? { verdict } : {}),
          };
        }),
      })),
      sets: [...table.sets].map(([name, set]) => ({
        name,
        type: set.set.type,
        flags: [...set.set.flags],
        elements: [...(withElements ? set.elements : [])]
          .filter(([, e]) => e.expiresAt === undefined || e.expiresAt > now)
          .map(([value, e]) => ({
            value,
            ...(e.timeout !== undefined ? { timeout: e.timeout } : {}),
            ...(e.expiresAt !== undefined ? { expires: Math.floor((e.expiresAt - now) / 1000) } : {}),
          })),
      })),
    };
  }

  /** The rules of a chain, for assertions. */
  rules(ref: NftTableRef, chain: string): readonly NftRule[] {
    return this.#state.tables.get(tableKey(ref))?.chains.get(chain)?.rules.map((r) => r.rule) ?? [];
  }

  #table(state: FakeState, ref: NftTableRef): FakeTable {
    const table = state.tables.get(tableKey(ref));
    if (table === undefined) throw new KernelError('nft apply failed', `No such file or directory: table ${tableKey(ref)}`, 2);
    return table;
  }

  #live(element: FakeElement | undefined): element is FakeElement {
    return element !== undefined && (element.expiresAt === undefined || element.expiresAt > this.clock.now());
  }

  #applyOperation(state: FakeState, { verb, object }: NftOperation): void {
    const enoent = (what: string): KernelError => new KernelError('nft apply failed', `No such file or directory: ${what}`, 2);
    const eexist = (what: string): KernelError => new KernelError('nft apply failed', `File exists: ${what}`, 17);
    const ebusy = (what: string): KernelError => new KernelError('nft apply failed', `Device or resource busy: ${what}`, 16);
    switch (object.kind) {
      case 'table': {
        const key = tableKey(object.table);
        const exists = state.tables.has(key);
        if (verb === 'add' || verb === 'create') {
          if (exists && verb === 'create') throw eexist(`table ${key}`);
          if (!exists) state.tables.set(key, { ref: object.table, chains: new Map(), sets: new Map() });
        } else if (verb === 'flush') {
          for (const chain of this.#table(state, object.table).chains.values()) chain.rules = [];
        } else {
          if (!exists) throw enoent(`table ${key}`);
          state.tables.delete(key);
        }
        return;
      }
      case 'chain': {
        const table = this.#table(state, object.chain.table);
        const name = object.chain.name;
        const chain = table.chains.get(name);
        if (verb === 'add' || verb === 'create') {
          if (chain !== undefined && verb === 'create') throw eexist(`chain ${name}`);
          if (chain === undefined) {
            table.chains.set(name, { ...(object.chain.base !== undefined ? { base: object.chain.base } : {}), rules: [] });
          }
        } else if (verb === 'flush') {
          if (chain === undefined) throw enoent(`chain ${name}`);
          chain.rules = [];
        } else {
          if (chain === undefined) throw enoent(`chain ${name}`);
          if (chain.rules.length > 0) throw ebusy(`chain ${name} is not empty`);
          for (const other of table.chains.values()) {
            if (other.rules.some((r) => jumpTargets(r.rule.expr).includes(name))) throw ebusy(`chain ${name} is referenced`);
          }
          table.chains.delete(name);
        }
        return;
      }
      case 'set': {
        const table = this.#table(state, object.set.table);
        const name = object.set.name;
        const set = table.sets.get(name);
        if (verb === 'add' || verb === 'create') {
          if (set !== undefined && verb === 'create') throw eexist(`set ${name}`);
          if (set === undefined) table.sets.set(name, { set: object.set, elements: new Map() });
        } else if (verb === 'flush') {
          if (set === undefined) throw enoent(`set ${name}`);
          set.elements = new Map();
        } else {
          if (set === undefined) throw enoent(`set ${name}`);
          for (const chain of table.chains.values()) {
            if (chain.rules.some((r) => setReferences(r.rule.expr).includes(name))) throw ebusy(`set ${name} is referenced`);
          }
          table.sets.delete(name);
        }
        return;
      }
      case 'rule': {
        if (verb !== 'add' && verb !== 'create') throw new KernelError('nft apply failed', `fake: ${verb} rule is not supported`);
        const table = this.#table(state, object.rule.table);
        const chain = table.chains.get(object.rule.chain);
        if (chain === undefined) throw enoent(`chain ${object.rule.chain}`);
        for (const target of jumpTargets(object.rule.expr)) {
          if (!table.chains.has(target)) throw enoent(`jump target ${target}`);
        }
        for (const set of setReferences(object.rule.expr)) {
          if (!table.sets.has(set)) throw enoent(`set ${set}`);
        }
        chain.rules.push({ handle: state.nextHandle++, rule: object.rule });
        return;
      }
      case 'element': {
        const table = this.#table(state, object.element.table);
        const set = table.sets.get(object.element.set);
        if (set === undefined) throw enoent(`set ${object.element.set}`);
        const now = this.clock.now();
        for (const element of object.element.elements) {
          const existing = set.elements.get(element.value);
          const live = this.#live(existing);
          if (verb === 'delete') {
            if (!live) throw enoent(`element ${element.value} in set ${object.element.set}`);
            set.elements.delete(element.value);
            continue;
          }
          if (verb === 'flush') throw new KernelError('nft apply failed', 'cannot flush an element');
          if (live && verb === 'create') throw eexist(`element ${element.value}`);
          const timeout = element.timeout ?? set.set.timeout;
          if (live && !this.elementUpdates) continue; // kernels before 6.12 ignore a re-add
          // the same timeout and no expires: the kernel keeps the old expiry
          if (live && existing.timeout === timeout && element.expires === undefined) continue;
          const life = element.expires ?? timeout;
          set.elements.set(element.value, {
            ...(timeout !== undefined ? { timeout } : {}),
            ...(life !== undefined ? { expiresAt: now + life * 1000 } : {}),
          });
        }
        return;
      }
    }
  }
}
