// The DNS state cache: learned (domain set, address) entries with wall-clock expiries, as the
// agent mirrors them from the dataplane and persists them across restarts and migrations.
// Time comes from the injected Clock; an entry whose expiry is ≤ now is absent.
// Persistence to disk (atomic write) is the agent's job; this module only (de)serialises.
import { z } from 'zod';
import type { LearnedEntry } from './learned.js';
import type { Clock } from './runtime.js';
import { InvalidInputError, type InputProblem } from './errors.js';
import { addressFamily, canonicalAddress } from './net-address.js';

/** Version of the serialised form; bump on incompatible changes. */
export const LEARNED_STATE_VERSION = 1;

const learnedEntrySchema = z.object({
  setId: z.number().int().min(1).max(0xffff_ffff),
  family: z.union([z.literal(4), z.literal(6)]),
  address: z.string(),
  expiresAt: z.number().int().nonnegative(),
  name: z.string().optional(),
});

const learnedStateSchema = z.object({
  version: z.literal(LEARNED_STATE_VERSION),
  savedAt: z.number().int().nonnegative(),
  entries: z.array(learnedEntrySchema),
});

export type SerializedLearnedState = z.infer<typeof learnedStateSchema>;

const compareEntries = (a: LearnedEntry, b: LearnedEntry): number =>
  a.setId - b.setId || a.family - b.family || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0);

export class LearnedStore {
  /**
   * set id → canonical address → entry. Two levels rather than one key string per entry: the
   * agent records 100,000 entries several times over at a restore and on every save, and building
   * and hashing a key string each time was most of that work.
   */
  readonly #sets = new Map<number, Map<string, LearnedEntry>>();

  constructor(private readonly clock: Clock) {}

  /**
   * Records an entry; an existing (set, address) entry keeps the later expiry, and its question
   * name when the new entry carries none (the kernel's maps know no names). Entries already
   * expired are ignored. Returns true when the store changed.
   */
  record(entry: LearnedEntry): boolean {
    const now = this.clock.now();
    if (entry.expiresAt <= now) return false;
    const address = canonicalAddress(entry.address) ?? entry.address;
    let addresses = this.#sets.get(entry.setId);
    if (addresses === undefined) this.#sets.set(entry.setId, (addresses = new Map()));
    const existing = addresses.get(address);
    if (existing && existing.expiresAt >= entry.expiresAt && existing.expiresAt > now) return false;
    const name = entry.name ?? (existing !== undefined && existing.expiresAt > now ? existing.name : undefined);
    const stored: LearnedEntry = { setId: entry.setId, family: entry.family, address, expiresAt: entry.expiresAt, ...(name === undefined ? {} : { name }) };
    addresses.set(address, stored);
    return true;
  }

  /** Records every entry; returns how many changed the store. */
  recordAll(entries: Iterable<LearnedEntry>): number {
    let changed = 0;
    for (const entry of entries) if (this.record(entry)) changed++;
    return changed;
  }

  /** The live entry for (set, address), if any. */
  get(setId: number, address: string): LearnedEntry | undefined {
    const entry = this.#sets.get(setId)?.get(canonicalAddress(address) ?? address);
    return entry && entry.expiresAt > this.clock.now() ? entry : undefined;
  }

  has(setId: number, address: string): boolean {
    return this.get(setId, address) !== undefined;
  }

  /** Live entries sorted by (set, family, address). */
  entries(): LearnedEntry[] {
    const now = this.clock.now();
    const live: LearnedEntry[] = [];
    for (const addresses of this.#sets.values()) for (const entry of addresses.values()) if (entry.expiresAt > now) live.push(entry);
    return live.sort(compareEntries);
  }

  /** Number of live entries. */
  get size(): number {
    const now = this.clock.now();
    let live = 0;
    for (const addresses of this.#sets.values()) for (const entry of addresses.values()) if (entry.expiresAt > now) live++;
    return live;
  }

  /** Drops expired entries; returns how many were dropped. */
  prune(): number {
    const now = this.clock.now();
    let dropped = 0;
    for (const [setId, addresses] of this.#sets) {
      for (const [address, entry] of addresses) {
        if (entry.expiresAt <= now) {
          addresses.delete(address);
          dropped++;
        }
      }
      if (addresses.size === 0) this.#sets.delete(setId);
    }
    return dropped;
  }

  /** Drops entries of domain sets that no longer exist; returns how many were dropped. */
  retainSets(setIds: ReadonlySet<number>): number {
    let dropped = 0;
    for (const [setId, addresses] of this.#sets) {
      if (setIds.has(setId)) continue;
      dropped += addresses.size;
      this.#sets.delete(setId);
    }
    return dropped;
  }

  clear(): void {
    this.#sets.clear();
  }

  /** JSON text of the live entries with the format version and the time it was taken. */
  serialize(): string {
    return serializeLearnedEntries(this.entries(), this.clock.now());
  }
}

/**
 * The serialised form of `entries`, taken at `savedAt`: `LearnedStore.serialize`'s text for
 * entries as `LearnedStore.entries()` gives them (live, one per (set, address), sorted), without
 * building a store from them again.
 */
export function serializeLearnedEntries(entries: readonly LearnedEntry[], savedAt: number): string {
  const state: SerializedLearnedState = {
    version: LEARNED_STATE_VERSION,
    savedAt,
    entries: entries.map((e) => ({
      setId: e.setId,
      family: e.family,
      address: e.address,
      expiresAt: e.expiresAt,
      ...(e.name === undefined ? {} : { name: e.name }),
    })),
  };
  return `${JSON.stringify(state, null, 2)}\n`;
}

/**
 * Parses serialised learned state (from `LearnedStore.serialize`). Throws InvalidInputError
 * naming `source`, the field and the reason. Expired entries are kept here; `record` drops them.
 */
export function parseLearnedState(text: string, source: string): LearnedEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidInputError([
      { file: source, field: '', reason: `not valid JSON (${error instanceof Error ? error.message : String(error)})` },
    ]);
  }
  const result = learnedStateSchema.safeParse(json);
  if (!result.success) {
    throw new InvalidInputError(
      result.error.issues.map((issue) => ({ file: source, field: formatPath(issue.path), reason: issue.message })),
    );
  }
  const problems: InputProblem[] = [];
  const entries: LearnedEntry[] = [];
  result.data.entries.forEach((e, i) => {
    // the family only: building the bytes of 100,000 addresses took ~170 ms of a restore
    if (addressFamily(e.address) !== e.family) {
      problems.push({ file: source, field: `entries[${i}].address`, reason: `"${e.address}" is not an IPv${e.family} address` });
      return;
    }
    entries.push({
      setId: e.setId,
      family: e.family,
      address: canonicalAddress(e.address) ?? e.address,
      expiresAt: e.expiresAt,
      ...(e.name === undefined ? {} : { name: e.name }),
    });
  });
  if (problems.length > 0) throw new InvalidInputError(problems);
  return entries;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}
