// Stable numeric ids for domain sets. A domain set is identified by its canonical key (the
// sorted, de-duplicated canonical pattern texts); its id is derived from a hash of that key,
// so the same patterns get the same id across runs, restarts and unrelated policy edits —
// learned kernel state (membership maps, nft sets) keyed by id survives a reload.
//
// Collisions (two keys hashing to the same id) are resolved deterministically: keys are
// taken in sorted order and a key whose id is taken probes id+1, id+2, … (skipping 0).
import { createHash } from 'node:crypto';

const MAX_ID = 0xffff_ffff;

/** The canonical key of a pattern list: sorted, de-duplicated canonical texts. */
export function domainSetKey(patternTexts: readonly string[]): string {
  return [...new Set(patternTexts)].sort().join('\n');
}

/** The id a key gets when nothing collides with it: 32 bits of SHA-256, never 0. */
export function domainSetHashId(key: string): number {
  const id = createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0);
  return id === 0 ? 1 : id;
}

/**
 * Assigns ids to every key; deterministic for a given set of keys, whatever their order.
 * `hash` is replaceable only so tests can force collisions.
 */
export function assignDomainSetIds(
  keys: Iterable<string>,
  hash: (key: string) => number = domainSetHashId,
): Map<string, number> {
  const sorted = [...new Set(keys)].sort();
  const taken = new Set<number>();
  const ids = new Map<string, number>();
  for (const key of sorted) {
    let id = hash(key);
    while (taken.has(id)) id = id === MAX_ID ? 1 : id + 1;
    taken.add(id);
    ids.set(key, id);
  }
  return ids;
}

/** Short name for dataplane objects: "ds_" and the id in 8 hex digits. */
export function domainSetName(id: number): string {
  return `ds_${id.toString(16).padStart(8, '0')}`;
}
