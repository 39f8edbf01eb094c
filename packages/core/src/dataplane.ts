// The contract every dataplane driver keeps (see DESIGN.md, "The contract").
import type { DataplaneKind, DesiredState } from './desired-state.js';
import type { LearnedEntry } from './learned.js';

/**
 * Status counters every dataplane reports under the same names: what the policies decided
 * (packets an Allow rule accepted, a Deny rule dropped, the default deny dropped) and, under
 * PARSER_COUNTER_PREFIX, the DNS parser's own counters (`parser.parsed`, `parser.learned`, …).
 */
export const POLICY_COUNTERS = {
  allowed: 'policy.allowed',
  denied: 'policy.denied',
  defaultDeny: 'policy.default_deny',
} as const;
export const PARSER_COUNTER_PREFIX = 'parser.';

/** The three policy decisions, as counted for POLICY_COUNTERS. */
export type PolicyDecisions = Record<keyof typeof POLICY_COUNTERS, number>;

/** POLICY_COUNTERS with their values, ready to merge into `DataplaneStatus.counters`. */
export function policyDecisionCounters(decisions: PolicyDecisions): Record<string, number> {
  return {
    [POLICY_COUNTERS.allowed]: decisions.allowed,
    [POLICY_COUNTERS.denied]: decisions.denied,
    [POLICY_COUNTERS.defaultDeny]: decisions.defaultDeny,
  };
}

/** The parser's counters under PARSER_COUNTER_PREFIX. */
export function parserCounters(values: Readonly<Record<string, number | bigint>>): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [`${PARSER_COUNTER_PREFIX}${name}`, Number(value)]));
}

export interface DataplaneStatus {
  readonly kind: DataplaneKind;
  /** Kernel objects the driver owns, as human-readable names ("nft table inet dnsplane", ...). */
  readonly objects: readonly string[];
  /** Parser and enforcement counters by name. */
  readonly counters: Readonly<Record<string, number>>;
  /** Learned (set, address) entries currently in force. */
  readonly learned: number;
}

/**
 * What `status` is asked for. `full` (the default): read from the kernel as it is now — on
 * nftables a listing of every learned element. `counters`: what a metrics scrape needs — the
 * same counters, objects and learned count, where the driver can give them without reading
 * every learned element (nftables counts the elements it wrote and last listed, listing them
 * again when that listing is 10 minutes old); may lag the kernel by elements another process
 * changed.
 */
export const STATUS_DETAILS = ['full', 'counters'] as const;
export type StatusDetail = (typeof STATUS_DETAILS)[number];

export interface StatusOptions {
  readonly detail?: StatusDetail;
}

export interface Dataplane {
  readonly kind: DataplaneKind;
  /**
   * Exactly what `install` would program for this state (nft JSON, iptables-restore input,
   * map contents). Pure: no kernel I/O.
   */
  render(state: DesiredState): string;
  /**
   * Make the kernel match `state`: all-or-nothing. Learned members of domain sets that still
   * exist survive; the inline DNS-to-IP-set guarantee holds once this resolves.
   */
  install(state: DesiredState): Promise<void>;
  /**
   * Optional: start loading what `install` will need from the kernel (e.g. verifying BPF
   * programs) ahead of it, so that work overlaps the caller's own (reading the resources);
   * `install` waits for it. Never changes enforcement; a failure here is reported by `install`.
   */
  prepare?(): void;
  /**
   * Optional, for a dataplane that reads none of the DNS parser's learned events and so turns
   * them off (the parser's maps are shared by every dataplane on the same pins). While another
   * dataplane that does read them is still in force — the nftables mirror during the make-before-
   * break of a live migration — the caller says `true` before `install`, and the events stay on;
   * `false` once that one is removed turns them off. Absent: the dataplane leaves them as they are.
   */
  keepLearnedEvents?(keep: boolean): Promise<void>;
  /** Every learned entry still in force. */
  exportLearned(): Promise<LearnedEntry[]>;
  /** Add learned entries (from state on disk or another dataplane); expired ones are ignored. */
  importLearned(entries: readonly LearnedEntry[]): Promise<void>;
  status(options?: StatusOptions): Promise<DataplaneStatus>;
  /**
   * The kernel objects of the last `install` that are gone — removed by someone else (a `flush
   * ruleset`, a firewall reload) — named as in `status().objects`; empty when all are there or
   * nothing was installed. Also what the kernel around it changed so that an install would
   * now program it differently (nftables' untrackDns auto: another firewall came or went),
   * described in words. Cheap (no learned entries read): the daemon calls it periodically
   * and installs the same state again when it is not empty.
   */
  missingObjects(): Promise<string[]>;
  /** Remove every kernel object this driver created. */
  remove(): Promise<void>;
  /** Stop background work (event consumers, timers) without touching enforcement. */
  close(): Promise<void>;
}
