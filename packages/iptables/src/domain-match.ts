// How a rule matches "destination is a learned member of domain set N": a pinned xt_bpf
// match program per domain set (`-m bpf --object-pinned <path>`), which looks the address up
// in the kernel membership maps with the set id fixed at load time. The bpf-parser package
// loads and pins those programs; the driver only needs their paths, and a hook to have them
// pinned before rules referencing them are applied.
import type { DomainSet } from '@dnsplane/core';

export interface DomainMatchProvider {
  /** Path of the pinned xt_bpf match program for the set. Pure. */
  matchProgramPath(setId: number): string;
  /**
   * Make sure a match program is pinned for every set before rules that use them are applied.
   * Called by `install` before anything is written.
   */
  prepare(sets: readonly DomainSet[]): Promise<void>;
  /**
   * Unpins the match programs of sets not in `keep`. Called by `install` after a successful
   * apply, when no rule references them any more.
   */
  prune?(keep: readonly number[]): Promise<void>;
  /** Unpins every match program. Called by `remove()` after our rules are gone. */
  unpinAll?(): Promise<void>;
  /** Releases file descriptors; pins stay. */
  close?(): Promise<void>;
}

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/dnsplane';

/** `<pinRoot>/xt_member_<set id, 8 hex digits>`. */
export function domainMatchPinPath(pinRoot: string, setId: number): string {
  return `${pinRoot.replace(/\/+$/, '')}/xt_member_${setId.toString(16).padStart(8, '0')}`;
}

/**
 * Paths under `pinRoot`, pinning nothing: a rule for a set whose program is not pinned
 * makes iptables-restore fail (and, being atomic, apply nothing). For tests and for
 * rendering; the agent uses `membershipDomainMatches` (bpf-membership.ts).
 */
export function pinnedDomainMatches(pinRoot: string = DEFAULT_PIN_ROOT): DomainMatchProvider {
  return {
    matchProgramPath: (setId) => domainMatchPinPath(pinRoot, setId),
    prepare: async () => {},
  };
}
