// The agent's iptables dataplane: inline DNS parsing through the pinned parser socket filter
// and domain rules through per-set xt_member programs, all under one bpffs pin root.
import type { Clock, ProcessRunner } from '@dnsplane/core';
import { MembershipMatchPrograms } from '@dnsplane/bpf-parser';
import { BpfDnsParserHook } from './bpf-parser-hook.js';
import { MembershipDomainMatches } from './bpf-membership.js';
import { DEFAULT_PIN_ROOT } from './domain-match.js';
import type { IptablesDataplaneOptions } from './driver.js';

export interface InlineOptions {
  /** Config `bpf.pinRoot`: parser maps and program, xt_member programs. */
  readonly pinRoot?: string;
  readonly clock?: Clock;
  /** Runs bpftool when remove() checks whether another dataplane still uses the parser maps. */
  readonly runner?: ProcessRunner;
}

/**
 * `pinRoot`, `domainMatches` and `dnsParser` for createIptablesDataplane, backed by the
 * bpf-parser. Touches nothing until `install` (safe for `apply --dry-run`).
 */
export function inlineParsing(options: InlineOptions = {}): Pick<IptablesDataplaneOptions, 'pinRoot' | 'domainMatches' | 'dnsParser'> {
  const pinRoot = options.pinRoot ?? DEFAULT_PIN_ROOT;
  return {
    pinRoot,
    domainMatches: new MembershipDomainMatches(pinRoot, (root) => new MembershipMatchPrograms({ pinRoot: root })),
    dnsParser: new BpfDnsParserHook({
      pinRoot,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.runner === undefined ? {} : { runner: options.runner }),
    }),
  };
}
