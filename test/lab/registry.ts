// What a lab owns, recorded on disk under /run/dnsplane-lab/ before anything is created, so
// that teardown — normal, on a signal, at exit, or by the stale-lab sweeper in a later run —
// removes exactly the lab's own namespaces, processes and /etc/netns folders.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { isProcessRunning, killRecordedGroup, processStartTime, type ProcessGroupRecord } from './process.js';
import { isLabId } from './topology.js';

export const STATE_ROOT = '/run/dnsplane-lab';

const labStateSchema = z.object({
  id: z.string().refine(isLabId, 'must be a lab id'),
  owner: z.object({ pid: z.number().int().positive(), startTime: z.string() }),
  namespaces: z.array(z.string().regex(/^dpl[a-z0-9]{6}-[a-z0-9]+$/)),
  netnsDirs: z.array(z.string().regex(/^\/etc\/netns\/dpl[a-z0-9]{6}-[a-z0-9]+$/)),
  processGroups: z.array(z.object({ pgid: z.number().int().positive(), startTime: z.string() })),
  /** Left running on purpose (`cli.ts up`): the sweeper skips it; `cli.ts down` removes it. */
  kept: z.boolean(),
});

export type LabState = z.infer<typeof labStateSchema>;

export function stateFile(id: string): string {
  return join(STATE_ROOT, `${id}.json`);
}

/** Folder for the lab's generated files (configs, resolv.conf variants, logs). */
export function labDirectory(id: string): string {
  return join(STATE_ROOT, id);
}

/** The mutable record of one live lab, persisted on every change. */
export class LabRecord {
  private readonly state: LabState;
  private readonly groups = new Map<number, ProcessGroupRecord>();
  private closed = false;

  constructor(id: string, namespaces: readonly string[], netnsDirs: readonly string[]) {
    this.state = {
      id,
      owner: { pid: process.pid, startTime: processStartTime(process.pid) ?? '' },
      namespaces: [...namespaces],
      netnsDirs: [...netnsDirs],
      processGroups: [],
      kept: false,
    };
    mkdirSync(labDirectory(id), { recursive: true });
    this.persist();
  }

  get id(): string {
    return this.state.id;
  }

  readonly processGroupListener = {
    added: (record: ProcessGroupRecord): void => {
      this.groups.set(record.pgid, record);
      this.persist();
    },
    removed: (pgid: number): void => {
      if (this.groups.delete(pgid)) this.persist();
    },
  };

  /** Marks the lab as deliberately left running after its owner exits. */
  keep(): void {
    this.state.kept = true;
    this.persist();
  }

  get kept(): boolean {
    return this.state.kept;
  }

  snapshot(): LabState {
    return { ...this.state, processGroups: [...this.groups.values()] };
  }

  /** After teardown, late process exits must not write the state file back. */
  close(): void {
    this.closed = true;
  }

  private persist(): void {
    if (this.closed) return;
    const file = stateFile(this.state.id);
    writeFileSync(`${file}.tmp`, JSON.stringify(this.snapshot(), null, 2));
    renameSync(`${file}.tmp`, file);
  }
}

export interface TeardownReport {
  readonly id: string;
  /** Processes that were still inside lab namespaces after the lab's groups were killed. */
  readonly strayPids: readonly number[];
  readonly problems: readonly string[];
}

export function namespaceExists(name: string): boolean {
  return existsSync(join('/run/netns', name));
}

/** PIDs of processes inside network namespace `name` (as `ip netns pids` reports them). */
export function pidsInNamespace(name: string): number[] {
  const result = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' });
  if (result.status !== 0) return [];
  return result.stdout
    .split('\n')
    .map((line) => Number.parseInt(line, 10))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

/**
 * Removes everything a lab recorded, synchronously (so it can run from an exit handler):
 * SIGKILLs its process groups, then any process still inside its namespaces (only the lab
 * puts processes there), deletes the namespaces and /etc/netns folders, then the state.
 */
export function teardownSync(state: LabState): TeardownReport {
  const problems: string[] = [];
  for (const group of state.processGroups) killRecordedGroup(group);
  const strayPids: number[] = [];
  for (const namespace of state.namespaces) {
    if (!namespaceExists(namespace)) continue;
    for (const pid of pidsInNamespace(namespace)) {
      if (pid === process.pid) continue;
      strayPids.push(pid);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  // The node namespace last: deleting a peer namespace removes its veth pair.
  for (const namespace of [...state.namespaces].reverse()) {
    if (!namespaceExists(namespace)) continue;
    const result = spawnSync('ip', ['netns', 'delete', namespace], { encoding: 'utf8' });
    if (result.status !== 0) problems.push(`ip netns delete ${namespace}: ${result.stderr.trim()}`);
  }
  for (const dir of state.netnsDirs) rmSync(dir, { recursive: true, force: true });
  rmSync(labDirectory(state.id), { recursive: true, force: true });
  rmSync(stateFile(state.id), { force: true });
  return { id: state.id, strayPids, problems };
}

/** Reads every lab state file; files that do not parse are reported, not trusted. */
export function readLabStates(): { states: LabState[]; invalid: string[] } {
  const states: LabState[] = [];
  const invalid: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(STATE_ROOT);
  } catch {
    return { states, invalid };
  }
  for (const entry of entries) {
    if (!entry.endsWith('.json')) continue;
    const file = join(STATE_ROOT, entry);
    try {
      const parsed = labStateSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
      if (parsed.success) states.push(parsed.data);
      else invalid.push(`${file}: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
    } catch (error) {
      invalid.push(`${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return { states, invalid };
}

/**
 * Tears down every lab whose owner process is gone (crashed or interrupted test run). Labs of
 * live processes — other test runs on this machine — and kept labs are left alone. Returns the reports.
 */
export function sweepStaleLabs(): TeardownReport[] {
  const reports: TeardownReport[] = [];
  for (const state of readLabStates().states) {
    if (state.kept || isProcessRunning(state.owner.pid, state.owner.startTime)) continue;
    reports.push(teardownSync(state));
  }
  return reports;
}
