// The real DomainMatchProvider: bpf-parser's per-set membership match programs (`xt_member`,
// a socket filter with the set id fixed in .rodata at load) that look the packet's destination
// up in the parser's membership maps, expiry checked. One program per domain set that a rule
// uses, pinned at `<pinRoot>/xt_member_<8 hex>`; the rules name that path.
import { KernelError } from '@dnsplane/core';
import type { DomainSet } from '@dnsplane/core';
import { DEFAULT_PIN_ROOT, domainMatchPinPath } from './domain-match.js';
import type { DomainMatchProvider } from './domain-match.js';

/** What this driver needs of bpf-parser's MembershipMatchPrograms. */
export interface MembershipMatchPinner {
  /** Loads and pins (or reuses) the match program of each set; set id → pin path. */
  ensure(setIds: readonly number[]): Map<number, string>;
  /** Unpins the programs of sets not in `keep`. */
  prune(keep: readonly number[]): void;
  close(): void;
}

export class MembershipDomainMatches implements DomainMatchProvider {
  readonly pinRoot: string;
  private programs: MembershipMatchPinner | undefined;

  /**
   * `open` builds the pinner on first use (never in the constructor: a driver is built for
   * `apply --dry-run` without root, and only `install` may touch the kernel).
   */
  constructor(
    pinRoot: string = DEFAULT_PIN_ROOT,
    private readonly open: (pinRoot: string) => MembershipMatchPinner,
  ) {
    this.pinRoot = pinRoot.replace(/\/+$/, '');
  }

  matchProgramPath(setId: number): string {
    return domainMatchPinPath(this.pinRoot, setId);
  }

  private pinner(): MembershipMatchPinner {
    this.programs ??= this.open(this.pinRoot);
    return this.programs;
  }

  async prepare(sets: readonly DomainSet[]): Promise<void> {
    if (sets.length === 0) return;
    const pinned = this.pinner().ensure(sets.map((s) => s.id));
    for (const set of sets) {
      const path = pinned.get(set.id);
      // The rendered rules name matchProgramPath(); a pin elsewhere would make every rule fail.
      if (path !== this.matchProgramPath(set.id)) {
        throw new KernelError(
          `the membership match program of domain set ${set.id} is pinned at ${path ?? '(nowhere)'}, not at ${this.matchProgramPath(set.id)}`,
        );
      }
    }
  }

  async prune(keep: readonly number[]): Promise<void> {
    this.pinner().prune(keep);
  }

  async unpinAll(): Promise<void> {
    this.pinner().prune([]);
  }

  async close(): Promise<void> {
    this.programs?.close();
    this.programs = undefined;
  }
}
