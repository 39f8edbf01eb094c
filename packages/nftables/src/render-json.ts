// The one renderer: a transaction → a libnftables-json document
// (`{"nftables":[{"metainfo":…},{"add":{"table":…}},…]}`), the exact input of
// `nft -j -f FILE` and of `nft_run_cmd_from_buffer`.
import type { NftChain, NftElements, NftElementValue, NftRule, NftSet, NftTableRef } from './nft-model.js';
import type { NftObject, NftOperation, NftTransaction } from './transaction.js';

export const JSON_SCHEMA_VERSION = 1;

/** A JSON value of the document; kept structural so documents can be compared and printed. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

export interface NftJsonDocument {
  readonly nftables: readonly JsonValue[];
}

/** nft 1.0.6 silently turns a fractional timeout into a PERMANENT element: refuse it here. */
function wholeSeconds(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${what} must be a whole number of seconds >= 1, got ${value}`);
  }
  return value;
}

function tableJson(table: NftTableRef): JsonValue {
  return { family: table.family, name: table.name };
}

function chainJson(chain: NftChain, verb: NftOperation['verb']): JsonValue {
  const ref = { family: chain.table.family, table: chain.table.name, name: chain.name };
  if (chain.base === undefined || verb === 'flush' || verb === 'delete') return ref;
  return {
    ...ref,
    type: chain.base.type,
    hook: chain.base.hook,
    prio: chain.base.priority,
    policy: chain.base.policy,
  };
}

function setJson(set: NftSet, verb: NftOperation['verb']): JsonValue {
  const ref = { family: set.table.family, table: set.table.name, name: set.name };
  if (verb === 'flush' || verb === 'delete') return ref;
  return {
    ...ref,
    type: set.type,
    ...(set.flags.length > 0 ? { flags: [...set.flags] } : {}),
    ...(set.timeout !== undefined ? { timeout: wholeSeconds(set.timeout, `set ${set.name} timeout`) } : {}),
  };
}

function ruleJson(rule: NftRule): JsonValue {
  return {
    family: rule.table.family,
    table: rule.table.name,
    chain: rule.chain,
    ...(rule.comment !== undefined ? { comment: rule.comment } : {}),
    expr: rule.expr as unknown as JsonValue,
  };
}

function elementValueJson(element: NftElementValue, verb: NftOperation['verb'], set: string): JsonValue {
  if (element.timeout === undefined || verb === 'delete') return element.value;
  const timeout = wholeSeconds(element.timeout, `element ${element.value} of ${set}`);
  if (element.expires === undefined) return { elem: { val: element.value, timeout } };
  return { elem: { val: element.value, timeout, expires: wholeSeconds(element.expires, `element ${element.value} of ${set} expires`) } };
}

function elementsJson(elements: NftElements, verb: NftOperation['verb']): JsonValue {
  if (elements.elements.length === 0) throw new RangeError(`element operation on ${elements.set} without elements`);
  return {
    family: elements.table.family,
    table: elements.table.name,
    name: elements.set,
    elem: elements.elements.map((e) => elementValueJson(e, verb, elements.set)),
  };
}

function objectJson(object: NftObject, verb: NftOperation['verb']): Record<string, JsonValue> {
  switch (object.kind) {
    case 'table':
      return { table: tableJson(object.table) };
    case 'chain':
      return { chain: chainJson(object.chain, verb) };
    case 'set':
      return { set: setJson(object.set, verb) };
    case 'rule':
      return { rule: ruleJson(object.rule) };
    case 'element':
      return { element: elementsJson(object.element, verb) };
  }
}

export function renderOperation(operation: NftOperation): JsonValue {
  return { [operation.verb]: objectJson(operation.object, operation.verb) };
}

export function renderDocument(transaction: NftTransaction): NftJsonDocument {
  return {
    nftables: [
      { metainfo: { json_schema_version: JSON_SCHEMA_VERSION } },
      ...transaction.operations.map(renderOperation),
    ],
  };
}

/** The document as text; `pretty` for humans (`render`, debug logs), compact for the kernel. */
export function serializeDocument(document: NftJsonDocument, pretty = false): string {
  return JSON.stringify(document, null, pretty ? 2 : undefined);
}

/**
 * One line per operation, sorted: a stable, order-independent view for golden tests (the
 * way kube-proxy's nftables tests compare transactions). Rules keep their relative order
 * inside their chain, because there order is meaning.
 */
export function sortedOperationLines(transaction: NftTransaction): string[] {
  const keyed = transaction.operations.map((op) => {
    const line = JSON.stringify(renderOperation(op));
    const key = op.object.kind === 'rule' ? `${op.verb} rule ${op.object.rule.chain}` : line;
    return { key, line };
  });
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((k) => k.line);
}
