// Learned state on disk: written atomically (temporary file in the same directory, fsync,
// rename over the old file, fsync the directory), so a crash leaves either the old or the new
// file, never a torn one. The format is core's versioned LearnedStore serialisation, bounded
// to `maxEntries` (the soonest-expiring entries are dropped beyond the cap).
//
// Next to it, `<statePath>.dataplane` records which dataplane is in force, so a restart with a
// different `dataplane:` knows what to migrate from. It is written (atomically) only once a
// dataplane is completely installed.
//
// A file that cannot be read as ours (bad JSON, foreign format, wrong version) is never fatal:
// it is renamed to `<path>.corrupt-<timestamp>` and reported.
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import {
  DATAPLANE_KINDS,
  IPTABLES_BACKENDS,
  isInvalidInput,
  NftTableNameSchema,
  PinRootSchema,
  type IptablesBackend,
  parseLearnedState,
  serializeLearnedEntries,
  type Clock,
  type DataplaneKind,
  type LearnedEntry,
} from '@dnsplane/core';

/** Default cap on persisted learned entries (≈ 10 MB of JSON). */
export const DEFAULT_STATE_MAX_ENTRIES = 100_000;

export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const directory = dirname(path);
  await mkdir(directory, { recursive: true });
  const temporary = join(directory, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  const directoryHandle = await open(directory, 'r');
  try {
    await directoryHandle.sync();
  } finally {
    await directoryHandle.close();
  }
}

/**
 * At most `maxEntries` entries: when over the cap, the entries that expire soonest are dropped
 * (they are the least useful: they would vanish first anyway). Order of the rest is kept.
 */
export function boundEntries(entries: readonly LearnedEntry[], maxEntries: number): LearnedEntry[] {
  if (entries.length <= maxEntries) return [...entries];
  const keep = new Set([...entries].sort((a, b) => b.expiresAt - a.expiresAt).slice(0, Math.max(0, maxEntries)));
  return entries.filter((e) => keep.has(e));
}

/**
 * Serialised learned state of `live` — entries as `LearnedStore.entries()` gives them (live, one
 * per (set, address), sorted) — taken at `savedAt` and bounded to `maxEntries`.
 */
export function serializeLearned(live: readonly LearnedEntry[], savedAt: number, maxEntries: number): { text: string; count: number; dropped: number } {
  if (live.length <= maxEntries) return { text: serializeLearnedEntries(live, savedAt), count: live.length, dropped: 0 };
  const bounded = boundEntries(live, maxEntries);
  return { text: serializeLearnedEntries(bounded, savedAt), count: bounded.length, dropped: live.length - bounded.length };
}

export type StateFileRead =
  | { readonly kind: 'missing' }
  | { readonly kind: 'ok'; readonly entries: LearnedEntry[] }
  /** The file was not ours or not readable as such; it was moved to `setAside`. */
  | { readonly kind: 'corrupt'; readonly problem: string; readonly setAside: string | undefined };

/** `<path>.corrupt-<UTC timestamp>`: where a bad file is moved. */
export function corruptPathFor(path: string, at: number): string {
  return `${path}.corrupt-${new Date(at).toISOString().replace(/[:.]/g, '-')}`;
}

async function setAside(path: string, at: number): Promise<string | undefined> {
  const target = corruptPathFor(path, at);
  try {
    await rename(path, target);
    return target;
  } catch {
    return undefined;
  }
}

/**
 * A file's text, or why there is none: ENOENT is `missing`; other I/O errors (permissions) are
 * `corrupt` without moving the file.
 */
async function readText(
  path: string,
): Promise<{ readonly kind: 'text'; readonly text: string } | { readonly kind: 'missing' } | { readonly kind: 'corrupt'; readonly problem: string; readonly setAside: undefined }> {
  try {
    return { kind: 'text', text: await readFile(path, 'utf8') };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'corrupt', problem: `cannot read ${path}: ${(error as Error).message}`, setAside: undefined };
  }
}

/**
 * Reads learned state. A missing file is `missing`; a file that does not parse as our format
 * is renamed to `<path>.corrupt-<timestamp>` and reported as `corrupt`. Never throws for the
 * content; I/O errors other than ENOENT (permissions) are reported as `corrupt` without moving.
 */
export async function readStateFile(path: string, clock: Clock): Promise<StateFileRead> {
  const read = await readText(path);
  if (read.kind !== 'text') return read;
  const { text } = read;
  try {
    return { kind: 'ok', entries: parseLearnedState(text, path) };
  } catch (error) {
    if (!isInvalidInput(error)) throw error;
    return { kind: 'corrupt', problem: error.message, setAside: await setAside(path, clock.now()) };
  }
}

// ---------------------------------------------------------------------------------------------
// The active-dataplane marker.

export const DATAPLANE_MARKER_VERSION = 1;

const markerSchema = z.object({
  version: z.literal(DATAPLANE_MARKER_VERSION),
  dataplane: z.enum(DATAPLANE_KINDS as unknown as [DataplaneKind, ...DataplaneKind[]]),
  /** For iptables: the configured backend (auto, legacy, nft). */
  iptablesBackend: z.enum(IPTABLES_BACKENDS).optional(),
  /** For nftables: the table it owned (a restart with another `nftables.table` removes it). */
  nftablesTable: NftTableNameSchema.optional(),
  /** The bpffs folder it pinned in (a restart with another `bpf.pinRoot` removes it). */
  pinRoot: PinRootSchema.optional(),
  since: z.number().int().nonnegative(),
});
export type DataplaneMarker = z.infer<typeof markerSchema>;

export const markerPathFor = (statePath: string): string => `${statePath}.dataplane`;

export type MarkerRead =
  | { readonly kind: 'missing' }
  | { readonly kind: 'ok'; readonly marker: DataplaneMarker }
  | { readonly kind: 'corrupt'; readonly problem: string; readonly setAside: string | undefined };

export async function readDataplaneMarker(statePath: string, clock: Clock): Promise<MarkerRead> {
  const path = markerPathFor(statePath);
  const read = await readText(path);
  if (read.kind !== 'text') return read;
  const { text } = read;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { kind: 'corrupt', problem: `${path}: not valid JSON (${(error as Error).message})`, setAside: await setAside(path, clock.now()) };
  }
  const parsed = markerSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const problem = `${path}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'not a dnsplane dataplane marker'}`;
    return { kind: 'corrupt', problem, setAside: await setAside(path, clock.now()) };
  }
  return { kind: 'ok', marker: parsed.data };
}

export async function writeDataplaneMarker(
  statePath: string,
  dataplane: DataplaneKind,
  clock: Clock,
  iptablesBackend?: IptablesBackend,
  nftablesTable?: string,
  pinRoot?: string,
): Promise<void> {
  const marker: DataplaneMarker = {
    version: DATAPLANE_MARKER_VERSION,
    dataplane,
    ...(dataplane === 'iptables' && iptablesBackend !== undefined ? { iptablesBackend } : {}),
    ...(dataplane === 'nftables' && nftablesTable !== undefined ? { nftablesTable } : {}),
    ...(pinRoot !== undefined ? { pinRoot } : {}),
    since: clock.now(),
  };
  await writeFileAtomic(markerPathFor(statePath), `${JSON.stringify(marker)}\n`);
}

/** Removes the state file and the marker (uninstall). */
export async function removeStateFiles(statePath: string): Promise<void> {
  await rm(statePath, { force: true });
  await rm(markerPathFor(statePath), { force: true });
}
