// An in-memory Dataplane for unit tests of the agent: it records what it was asked to do
// (installs, learned imports/exports, removal) and keeps learned entries in a LearnedStore.
// It programs nothing; real behaviour is tested against the kernel drivers.
import type { Dataplane, DataplaneStatus, StatusOptions } from './dataplane.js';
import type { DataplaneKind, DesiredState } from './desired-state.js';
import type { LearnedEntry } from './learned.js';
import { LearnedStore } from './learned-store.js';
import type { Clock } from './runtime.js';
import { systemClock } from './runtime.js';

export type FakeDataplaneEvent =
  | { readonly type: 'install'; readonly state: DesiredState }
  | { readonly type: 'importLearned'; readonly entries: readonly LearnedEntry[] }
  | { readonly type: 'exportLearned'; readonly entries: readonly LearnedEntry[] }
  | { readonly type: 'remove' }
  | { readonly type: 'close' };

export interface FakeDataplaneOptions {
  readonly kind?: DataplaneKind;
  readonly clock?: Clock;
}

export class FakeDataplane implements Dataplane {
  readonly kind: DataplaneKind;
  /** Everything asked of this dataplane, in order. */
  readonly events: FakeDataplaneEvent[] = [];
  /** The state currently "programmed" (last successful install), or undefined. */
  installed: DesiredState | undefined;
  /** When set, the next install rejects with this error and leaves `installed` unchanged. */
  failNextInstall: Error | undefined;
  removed = false;
  closed = false;
  readonly learned: LearnedStore;
  readonly counters: Record<string, number> = {};

  constructor(options: FakeDataplaneOptions = {}) {
    this.kind = options.kind ?? 'nftables';
    this.learned = new LearnedStore(options.clock ?? systemClock);
  }

  render(state: DesiredState): string {
    return `${JSON.stringify({ fake: this.kind, state }, null, 2)}\n`;
  }

  /** Successful installs, in order. */
  get installs(): DesiredState[] {
    return this.events.flatMap((e) => (e.type === 'install' ? [e.state] : []));
  }

  async install(state: DesiredState): Promise<void> {
    const failure = this.failNextInstall;
    if (failure) {
      this.failNextInstall = undefined;
      throw failure;
    }
    this.installed = state;
    this.removed = false;
    this.missing = [];
    this.events.push({ type: 'install', state });
    // Like a real driver: learned members of sets that no longer exist go away.
    this.learned.retainSets(new Set(state.domainSets.map((s) => s.id)));
  }

  /** Simulates the DNS parser teaching an entry. */
  learn(entry: LearnedEntry): void {
    this.learned.record(entry);
    this.counters['learned'] = (this.counters['learned'] ?? 0) + 1;
  }

  async exportLearned(): Promise<LearnedEntry[]> {
    const entries = this.learned.entries();
    this.events.push({ type: 'exportLearned', entries });
    return entries;
  }

  async importLearned(entries: readonly LearnedEntry[]): Promise<void> {
    this.events.push({ type: 'importLearned', entries: [...entries] });
    this.learned.recordAll(entries);
  }

  /** What missingObjects() reports until the next install (tests set it to simulate a flush). */
  missing: string[] = [];
  /** How often missingObjects() was called. */
  missingChecks = 0;
  /** The options of every status() call, in order. */
  readonly statusRequests: StatusOptions[] = [];

  async missingObjects(): Promise<string[]> {
    this.missingChecks += 1;
    return [...this.missing];
  }

  async status(options: StatusOptions = {}): Promise<DataplaneStatus> {
    this.statusRequests.push(options);
    return {
      kind: this.kind,
      objects: this.installed ? [`fake ${this.kind} (${this.installed.policies.length} policies)`] : [],
      counters: { ...this.counters },
      learned: this.learned.size,
    };
  }

  async remove(): Promise<void> {
    this.events.push({ type: 'remove' });
    this.installed = undefined;
    this.removed = true;
    this.learned.clear();
  }

  async close(): Promise<void> {
    this.events.push({ type: 'close' });
    this.closed = true;
  }
}
