// A transaction: an ordered list of typed operations on nft objects that the kernel applies
// all-or-nothing (one libnftables-json document = one netlink batch).
import type { NftChain, NftElements, NftRule, NftSet, NftTableRef } from './nft-model.js';

export type NftObject =
  | { readonly kind: 'table'; readonly table: NftTableRef }
  | { readonly kind: 'chain'; readonly chain: NftChain }
  | { readonly kind: 'set'; readonly set: NftSet }
  | { readonly kind: 'rule'; readonly rule: NftRule }
  | { readonly kind: 'element'; readonly element: NftElements };

/**
 * `add` creates or keeps an existing object; `create` fails when it exists; `flush` empties a
 * table, chain or set; `delete` removes it (fails when it does not exist).
 */
export type NftVerb = 'add' | 'create' | 'flush' | 'delete';

export interface NftOperation {
  readonly verb: NftVerb;
  readonly object: NftObject;
}

export class NftTransaction {
  readonly #operations: NftOperation[] = [];

  get operations(): readonly NftOperation[] {
    return this.#operations;
  }

  get size(): number {
    return this.#operations.length;
  }

  add(object: NftObject): this {
    return this.#push('add', object);
  }

  create(object: NftObject): this {
    return this.#push('create', object);
  }

  flush(object: NftObject): this {
    if (object.kind === 'rule' || object.kind === 'element') {
      throw new TypeError(`nft cannot flush a ${object.kind}`);
    }
    return this.#push('flush', object);
  }

  delete(object: NftObject): this {
    return this.#push('delete', object);
  }

  #push(verb: NftVerb, object: NftObject): this {
    this.#operations.push({ verb, object });
    return this;
  }
}
