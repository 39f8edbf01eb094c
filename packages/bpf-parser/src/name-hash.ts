// The name hash the kernel parser and the domain-table encoder share (bpf/dnsplane_maps.h):
// FNV-1a 64 over each lower-cased label, then the labels folded right to left, so the hash
// of every label-boundary suffix of a name ("com", "example.com", "www.example.com") falls
// out of one pass. The kernel keys the domain table and remembered queries by these hashes.

const MASK = (1n << 64n) - 1n;
export const FNV_OFFSET = 0xcbf29ce484222325n;
export const FNV_PRIME = 0x100000001b3n;

/** FNV-1a 64 of one label, ASCII letters lower-cased (other bytes as they are). */
export function labelHash(label: Uint8Array): bigint {
  let h = FNV_OFFSET;
  for (const byte of label) {
    const c = byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte;
    h = ((h ^ BigInt(c)) * FNV_PRIME) & MASK;
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
 * ([0] is the root, [labels.length] the whole name).
 */
export function suffixHashes(labels: readonly string[]): bigint[] {
  const out = [FNV_OFFSET];
  let h = FNV_OFFSET;
  for (let k = labels.length - 1; k >= 0; k--) {
    h = suffixMix(h, labelHash(labelBytes(labels[k] ?? '')));
    out.push(h);
  }
  return out;
}

/** Hash of a whole name given as labels (left to right). */
export function nameHash(labels: readonly string[]): bigint {
  return suffixHashes(labels)[labels.length] ?? FNV_OFFSET;
}
