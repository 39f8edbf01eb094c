// The name hash the kernel parser and the domain-table encoder share (bpf/dnsplane_maps.h):
// each lower-cased label hashed 8 bytes at a time, then the labels folded right to left, so
// the hash of every label-boundary suffix of a name ("com", "example.com", "www.example.com")
// falls out of one pass. The kernel keys the domain table and remembered queries by these.

const MASK = (1n << 64n) - 1n;
export const FNV_OFFSET = 0xcbf29ce484222325n;
export const FNV_PRIME = 0x100000001b3n;
export const HASH_MUL = 0x9e3779b97f4a7c15n;

/**
 * Hash of one label: h = OFFSET ^ length; per 8-byte chunk (little-endian, zero-padded,
 * ASCII letters lower-cased) h = (h ^ chunk) * MUL, h ^= h >> 32.
 */
export function labelHash(label: Uint8Array): bigint {
  let h = FNV_OFFSET ^ BigInt(label.length);
  for (let at = 0; at < label.length; at += 8) {
    let chunk = 0n;
    for (let i = Math.min(7, label.length - at - 1); i >= 0; i--) {
      const byte = label[at + i] ?? 0;
      const c = byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte;
      chunk = (chunk << 8n) | BigInt(c);
    }
    h = ((h ^ chunk) * HASH_MUL) & MASK;
    h ^= h >> 32n;
  }
  return h;
}

/** Folds one more label (to the left) into the hash of a suffix. */
export function suffixMix(suffix: bigint, label: bigint): bigint {
  const h = ((suffix ^ label) * FNV_PRIME) & MASK;
  return h ^ (h >> 32n);
}

/** Label text (lower-case ASCII, or bytes as latin1 characters) to bytes. */
export function labelBytes(label: string): Uint8Array {
  return Uint8Array.from(label, (ch) => ch.charCodeAt(0) & 0xff);
}

/**
 * suffixHashes(labels)[k] is the hash of the name made of the k rightmost labels
 * ([0] is the root, [labels.length] the whole name). `cache`: label hashes kept across calls.
 */
export function suffixHashes(labels: readonly string[], cache?: Map<string, bigint>): bigint[] {
  const out = [FNV_OFFSET];
  let h = FNV_OFFSET;
  for (let k = labels.length - 1; k >= 0; k--) {
    const label = labels[k] ?? '';
    let hash = cache?.get(label);
    if (hash === undefined) {
      hash = labelHash(labelBytes(label));
      cache?.set(label, hash);
    }
    h = suffixMix(h, hash);
    out.push(h);
  }
  return out;
}

/**
 * nameHash(labels), with the label hashes kept in `cache` across calls: a domain table of
 * 10,000 names hashes the same few labels ("com", "example", …) over and over, and each label
 * hash is a BigInt loop over its bytes.
 */
export function cachedNameHash(labels: readonly string[], cache: Map<string, bigint>): bigint {
  return suffixHashes(labels, cache)[labels.length] ?? FNV_OFFSET;
}

/** Hash of a whole name given as labels (left to right). */
export function nameHash(labels: readonly string[]): bigint {
  return suffixHashes(labels)[labels.length] ?? FNV_OFFSET;
}
