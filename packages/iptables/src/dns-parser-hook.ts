// Inline DNS parsing with xt_bpf: the bpf-parser's socket filter (`dnsplane_parse_socket`),
// pinned, runs as a match in a rule every DNS packet to or from a trusted server traverses,
// before any verdict: queries are remembered, responses teach the membership maps before
// they reach the client. The program always matches and the rules have no target, so the
// packet goes on unchanged: the parser never decides a verdict.
import type { DnsSettings, DomainSet, LearnedEntry } from '@dnsplane/core';

export interface DnsParserHook {
  /** Path of the pinned parser socket filter. Pure. */
  readonly programPath: string;
  /**
   * Make sure the parser is loaded, pinned at `programPath` and configured with these DNS
   * settings (trusted servers, TTLs) and domain sets (the domain table it matches names
   * against) before rules that use it are applied.
   */
  prepare(dns: DnsSettings, domainSets: readonly DomainSet[]): Promise<void>;
  /**
   * Keep the parser's learned events on (`true`) though nothing here reads them, while another
   * dataplane that does (the nftables mirror) is still in force; `false` turns them off again.
   * See Dataplane.keepLearnedEvents.
   */
  keepLearnedEvents?(keep: boolean): Promise<void>;
  /** Learned (set, address) entries in force, from the kernel membership maps. */
  exportLearned?(): Promise<LearnedEntry[]>;
  /** Writes learned entries into the kernel membership maps (a later expiry wins). */
  importLearned?(entries: readonly LearnedEntry[]): Promise<void>;
  /** Parser counters (summed over CPUs) and the number of learned entries in force. */
  statistics?(): Promise<{ counters: Readonly<Record<string, number>>; learned: number }>;
  /**
   * Unpins the parser, and its maps unless another dataplane still uses them (resolves
   * false then). Called by `remove()` after no rule references them.
   */
  unpin?(): Promise<boolean>;
  /** Releases file descriptors; pins (and so enforcement and learning) stay. */
  close?(): Promise<void>;
}
