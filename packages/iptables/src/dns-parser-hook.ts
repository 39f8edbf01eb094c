// Inline DNS parsing with xt_bpf: the bpf-parser's socket filter (`dnsplane_parse_socket`),
// pinned, runs as a match in a rule every DNS packet to or from a trusted server traverses,
// before any verdict: queries are remembered, responses teach the membership maps before
// they reach the client. The program always matches and the rules have no target, so the
// packet goes on unchanged.
import type { DnsSettings } from '@dnsplane/core';

export interface DnsParserHook {
  /** Path of the pinned parser socket filter. Pure. */
  readonly programPath: string;
  /**
   * Make sure the parser is loaded, pinned at `programPath` and configured with these DNS
   * settings (trusted servers, TTLs) before rules that use it are applied.
   */
  prepare(dns: DnsSettings): Promise<void>;
}
