// NftHandle over a real nft executor: transactions are rendered to one JSON document and
// applied in one call; listings are parsed from nft's JSON output.
import type { NftHandle, NftLogger } from './handle.js';
import type { NftExecutor } from './executor.js';
import type { NftTableRef } from './nft-model.js';
import { countListedRules, parseBaseChainList, parseRulesetListing, parseTableList, parseTableListing } from './parse-listing.js';
import { renderDocument, serializeDocument } from './render-json.js';
import type { NftBaseChainRef, NftRulesetSnapshot, NftSetSnapshot, NftTableSnapshot } from './snapshot.js';
import type { NftTransaction } from './transaction.js';

export class JsonNftHandle implements NftHandle {
  constructor(
    readonly executor: NftExecutor,
    readonly logger: NftLogger,
  ) {}

  async apply(transaction: NftTransaction): Promise<void> {
    if (transaction.size === 0) return;
    const document = serializeDocument(renderDocument(transaction));
    this.logger.debug({ executor: this.executor.kind, operations: transaction.size, document }, 'nft: applying document');
    await this.executor.runDocument(document, { dryRun: false });
  }

  async check(transaction: NftTransaction): Promise<void> {
    if (transaction.size === 0) return;
    await this.executor.runDocument(serializeDocument(renderDocument(transaction)), { dryRun: true });
  }

  async listTables(): Promise<NftTableRef[]> {
    return parseTableList(await this.executor.list(['list', 'tables']));
  }

  async listTable(table: NftTableRef, options: { readonly elements?: boolean } = {}): Promise<NftTableSnapshot | undefined> {
    if (options.elements === false) {
      // nft 1.0.6 fetches every set element for `list table` even when terse (~0.7 s at 100,000
      // elements), but not for a terse `list ruleset` (~0.2 s); the ruleset's other tables are
      // in nft's cache either way, and their objects are skipped here.
      return (await this.listRuleset(table)).table;
    }
    return this.#ifTableExists(table, async () =>
      parseTableListing(await this.executor.list(['list', 'table', table.family, table.name]), table),
    );
  }

  async listRuleset(table: NftTableRef): Promise<NftRulesetSnapshot> {
    return parseRulesetListing(await this.executor.list(['list', 'ruleset'], { terse: true }), table);
  }

  async listBaseChains(): Promise<NftBaseChainRef[]> {
    return parseBaseChainList(await this.executor.list(['list', 'chains']));
  }

  async countRules(chain: Pick<NftBaseChainRef, 'family' | 'table' | 'name'>): Promise<number | undefined> {
    let text: string;
    try {
      text = await this.executor.list(['list', 'chain', chain.family, chain.table, chain.name]);
    } catch {
      return undefined; // gone (or its table): nothing to count
    }
    return countListedRules(text);
  }

  /** Throws KernelError when the set does not exist (callers ask only for sets they installed). */
  async listSet(table: NftTableRef, set: string): Promise<NftSetSnapshot | undefined> {
    return this.#ifTableExists(table, async () => {
      const listing = parseTableListing(await this.executor.list(['list', 'set', table.family, table.name, set]), table);
      return listing.sets.find((s) => s.name === set);
    });
  }

  /**
   * `read`, or undefined when the table does not exist. Read first and asked about the table
   * only when the read fails: `list tables` costs as much as listing every table with its
   * elements in nft 1.0.6 (~0.4 s at 100,000 elements), a failed read ~20 ms.
   */
  async #ifTableExists<T>(table: NftTableRef, read: () => Promise<T>): Promise<T | undefined> {
    try {
      return await read();
    } catch (error) {
      if (!(await this.#exists(table))) return undefined;
      throw error;
    }
  }

  async #exists(table: NftTableRef): Promise<boolean> {
    const tables = await this.listTables();
    return tables.some((t) => t.family === table.family && t.name === table.name);
  }
}
