// The iptables dataplane: own chains in the filter table of iptables and ip6tables, applied
// with `<tool>-restore --noflush` (one atomic transaction per table and family), three jumps
// from the built-in chains kept exactly once each.
import type { Dataplane, DataplaneStatus, DesiredState, IpFamily, LearnedEntry, ProcessRunner } from '@dnsplane/core';
import { KernelError, policyDecisionCounters } from '@dnsplane/core';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { z } from 'zod';
import { backendChoiceSchema, resolveBackend, runTool, toolName } from './backend.js';
import type { BackendChoice, ResolvedBackend } from './backend.js';
import { compileRulesets, DEFAULT_MARKS } from './compile.js';
import type { MarkBits } from './compile.js';
import { DEFAULT_PIN_ROOT, pinnedDomainMatches } from './domain-match.js';
import type { DomainMatchProvider } from './domain-match.js';
import type { DnsParserHook } from './dns-parser-hook.js';
import type { Ruleset, TableName } from './model.js';
import { iptablesProcessRunner } from './process-runner.js';
import { renderFresh, renderRemoval, renderTable, restoreLabel } from './render.js';
import { droppedPackets, parseSavedTable, policyPackets, rollbackInput, tableChanges } from './saved-table.js';
import type { SavedTable } from './saved-table.js';

export interface IptablesDataplaneOptions {
  /** `iptables.backend` from the config; `auto` (default) follows what the host already uses. */
  readonly backend?: BackendChoice;
  /** Runs iptables tools (tests enter a namespace with `nsenter --net`). Default: iptablesProcessRunner. */
  readonly runner?: ProcessRunner;
  /** Where domain-set match programs are pinned; used when `domainMatches` is not given. */
  readonly pinRoot?: string;
  /** Pins and names the xt_bpf match program of each domain set (bpf-parser provides one). */
  readonly domainMatches?: DomainMatchProvider;
  /**
   * The inline DNS parser (bpf-parser's socket filter) as an xt_bpf match on DNS traffic of
   * the trusted servers. Without it no parser rules are rendered (learning happens elsewhere).
   */
  readonly dnsParser?: DnsParserHook;
  /** Packet-mark bits dnsplane may use (default 0x01000000 allow, 0x02000000 match). */
  readonly marks?: MarkBits;
  readonly logger?: Logger;
}

const FAMILIES: readonly IpFamily[] = [4, 6];
const TABLE: TableName = 'filter';

const singleBit = z
  .number()
  .int()
  .refine((n) => n > 0 && n <= 0x8000_0000 && (n & (n - 1)) === 0, 'must be a single bit of the 32-bit packet mark');
/** The two mark bits: single, distinct bits. */
export const markBitsSchema = z
  .object({ allow: singleBit, match: singleBit })
  .refine((m) => m.allow !== m.match, 'allow and match must be different bits');

export class IptablesDataplane implements Dataplane {
  readonly kind = 'iptables' as const;
  private readonly runner: ProcessRunner;
  private readonly domainMatches: DomainMatchProvider;
  private readonly marks: MarkBits;
  private readonly logger: Logger;
  private readonly backendChoice: BackendChoice;
  private readonly dnsParser: DnsParserHook | undefined;
  private backend: ResolvedBackend | undefined;
  /** install/remove run one at a time: each reads the kernel state the previous one left. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Per family, the objects the last install left (status names): what missingObjects looks for. */
  private expected: Map<IpFamily, readonly string[]> | undefined;

  constructor(options: IptablesDataplaneOptions = {}) {
    this.backendChoice = backendChoiceSchema.parse(options.backend ?? 'auto');
    this.runner = options.runner ?? iptablesProcessRunner;
    this.domainMatches = options.domainMatches ?? pinnedDomainMatches(options.pinRoot ?? DEFAULT_PIN_ROOT);
    this.marks = markBitsSchema.parse(options.marks ?? DEFAULT_MARKS);
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.dnsParser = options.dnsParser;
  }

  /** The two restore inputs a fresh host would get, each under a comment line naming its tool. */
  render(state: DesiredState): string {
    const { v4, v6 } = this.compile(state);
    return `${restoreLabel(4)}\n${renderFresh(v4)}${restoreLabel(6)}\n${renderFresh(v6)}`;
  }

  /** The backend in use (resolved once: `auto` inspects the host on first use). */
  async resolvedBackend(): Promise<ResolvedBackend> {
    this.backend ??= await resolveBackend(this.backendChoice, this.runner);
    return this.backend;
  }

  install(state: DesiredState): Promise<void> {
    return this.serially(() => this.installNow(state));
  }

  private async installNow(state: DesiredState): Promise<void> {
    const rulesets = this.compile(state);
    const rules = state.policies.flatMap((p) => [...(p.ingress ?? []), ...(p.egress ?? [])]);
    const used = new Set(rules.map((r) => r.destination.domainSetId).filter((id) => id !== undefined));
    await this.domainMatches.prepare(state.domainSets.filter((s) => used.has(s.id)));
    if (this.dnsParser) await this.dnsParser.prepare(state.dns, state.domainSets);
    const backend = await this.resolvedBackend();

    const applied: Array<{ family: IpFamily; before: SavedTable }> = [];
    for (const ruleset of [rulesets.v4, rulesets.v6]) {
      const before = await this.readTable(ruleset.family);
      try {
        await this.applyRuleset(ruleset, before);
        applied.push({ family: ruleset.family, before });
      } catch (error) {
        await this.rollBack(applied);
        throw error;
      }
    }
    this.logger.info({ event: 'iptables.installed', backend, chains: rulesets.v4.tables[0]?.chains.length ?? 0 }, 'iptables rules installed');
    // What is there now is what a later flush (a firewall reload, `iptables -F`) would take away.
    const expected = new Map<IpFamily, readonly string[]>();
    for (const family of FAMILIES) expected.set(family, this.objectNames(family, await this.readTable(family), backend));
    this.expected = expected;
    // Only now does no rule reference the match programs of sets this state no longer uses.
    if (this.domainMatches.prune) {
      try {
        await this.domainMatches.prune([...used]);
      } catch (error) {
        this.logger.warn({ event: 'iptables.prune_failed', err: error }, 'could not unpin unused domain-set match programs');
      }
    }
  }

  /** The parser hook keeps the learned events on while another dataplane reads them (Dataplane.keepLearnedEvents). */
  keepLearnedEvents(keep: boolean): Promise<void> {
    return this.serially(async () => {
      await this.dnsParser?.keepLearnedEvents?.(keep);
    });
  }

  /**
   * Learned members live in the kernel membership maps of bpf-parser, which the parser writes
   * and the xt_member match programs read; without a parser hook this driver has none.
   */
  async exportLearned(): Promise<LearnedEntry[]> {
    return (await this.dnsParser?.exportLearned?.()) ?? [];
  }

  async importLearned(entries: readonly LearnedEntry[]): Promise<void> {
    await this.dnsParser?.importLearned?.(entries);
  }

  /**
   * Our chains, their rules and the jumps into them that the last install left and that are
   * gone now: a firewall reload or `iptables -F` / `-X` took them (one `-save` per family).
   */
  missingObjects(): Promise<string[]> {
    return this.serially(async () => {
      const expected = this.expected;
      if (expected === undefined) return [];
      const backend = await this.resolvedBackend();
      const missing: string[] = [];
      for (const family of FAMILIES) {
        const present = new Set(this.objectNames(family, await this.readTable(family), backend));
        for (const name of expected.get(family) ?? []) if (!present.has(name)) missing.push(name);
      }
      return missing;
    });
  }

  /** Chains and jumps of one family's saved table as status() names them, and with `rules` our rules too. */
  private objectNames(family: IpFamily, saved: SavedTable, backend: ResolvedBackend, rules = true): string[] {
    const tool = family === 4 ? 'iptables' : 'ip6tables';
    return [
      ...saved.chains.map((chain) => `${tool}-${backend} ${TABLE} chain ${chain}`),
      ...saved.jumps.map((jump) => `${tool}-${backend} ${TABLE} jump ${jump.from} -> ${jump.to}`),
      ...(rules ? saved.rules.map((rule) => `${tool}-${backend} ${TABLE} rule ${rule}`) : []),
    ];
  }

  async status(): Promise<DataplaneStatus> {
    const backend = await this.resolvedBackend();
    const objects: string[] = [];
    const counters: Record<string, number> = {};
    const decided = { allowed: 0, denied: 0, defaultDeny: 0 };
    for (const family of FAMILIES) {
      const saved = await this.readTable(family);
      objects.push(...this.objectNames(family, saved, backend, false));
      counters[`ipv${family}_chains`] = saved.chains.length;
      counters[`ipv${family}_rules`] = saved.rules.length;
      counters[`ipv${family}_jumps`] = saved.jumps.length;
      const counted = await this.save(family, ['-c']);
      counters[`ipv${family}_dropped_packets`] = droppedPackets(counted);
      const packets = policyPackets(counted);
      decided.allowed += packets.allowed;
      decided.denied += packets.denied;
      decided.defaultDeny += packets.defaultDeny;
    }
    Object.assign(counters, policyDecisionCounters(decided));
    const parser = await this.dnsParser?.statistics?.();
    if (parser) Object.assign(counters, parser.counters);
    return { kind: 'iptables', objects, counters, learned: parser?.learned ?? 0 };
  }

  remove(): Promise<void> {
    return this.serially(() => this.removeNow());
  }

  private async removeNow(): Promise<void> {
    this.expected = undefined;
    for (const family of FAMILIES) {
      const saved = await this.readTable(family);
      if (saved.chains.length === 0 && saved.jumps.length === 0) continue;
      await this.restore(family, renderRemoval(TABLE, saved.jumps.map((j) => j.spec), saved.chains));
    }
    // The rules that referenced the pinned programs are gone: now the pins can go.
    await this.domainMatches.unpinAll?.();
    const mapsRemoved = await this.dnsParser?.unpin?.();
    if (mapsRemoved === false) {
      this.logger.info({ event: 'iptables.maps_kept' }, 'the parser maps stay pinned: another dataplane uses them');
    }
    this.logger.info({ event: 'iptables.removed' }, 'iptables rules and pins removed');
  }

  /** Releases file descriptors; rules, pinned programs and maps stay in force. */
  async close(): Promise<void> {
    await this.domainMatches.close?.();
    await this.dnsParser?.close?.();
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private compile(state: DesiredState): { v4: Ruleset; v6: Ruleset } {
    return compileRulesets(state, {
      domainMatches: this.domainMatches,
      marks: this.marks,
      ...(this.dnsParser ? { dnsParserPath: this.dnsParser.programPath } : {}),
    });
  }

  private async applyRuleset(ruleset: Ruleset, before: SavedTable): Promise<void> {
    const input = ruleset.tables.map((table) => renderTable(table, tableChanges(table, before))).join('');
    await this.restore(ruleset.family, input);
  }

  /** Puts the families already applied back as they were before this install. */
  private async rollBack(applied: ReadonlyArray<{ family: IpFamily; before: SavedTable }>): Promise<void> {
    for (const { family, before } of [...applied].reverse()) {
      try {
        const now = await this.readTable(family);
        await this.restore(family, rollbackInput(before, now));
        this.logger.warn({ event: 'iptables.rolled_back', family }, 'install failed; previous rules restored');
      } catch (error) {
        this.logger.error({ event: 'iptables.rollback_failed', family, err: error }, 'rollback failed');
      }
    }
  }

  private async readTable(family: IpFamily): Promise<SavedTable> {
    return parseSavedTable(await this.save(family), TABLE);
  }

  /** `<tool>-save -t filter` output. */
  private async save(family: IpFamily, extra: readonly string[] = []): Promise<string> {
    const command = toolName(await this.resolvedBackend(), family, 'save');
    const result = await runTool(this.runner, command, [...extra, '-t', TABLE]);
    if (result.code !== 0) throw new KernelError(`${command} -t ${TABLE} failed`, result.stderr.trim());
    return result.stdout;
  }

  private async restore(family: IpFamily, input: string): Promise<void> {
    const command = toolName(await this.resolvedBackend(), family, 'restore');
    const result = await runTool(this.runner, command, ['-w', '--noflush'], input);
    if (result.code !== 0) {
      throw new KernelError(`${command} --noflush failed (nothing applied)`, restoreErrorDetail(result.stderr, input));
    }
  }
}

export function createIptablesDataplane(options: IptablesDataplaneOptions = {}): IptablesDataplane {
  return new IptablesDataplane(options);
}

/** The tool's message, plus the input line it names ("Error occurred at line: N"). */
export function restoreErrorDetail(stderr: string, input: string): string {
  const message = stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('Try `'))
    .join('; ');
  const lineNumber = /line:? (\d+)/i.exec(stderr)?.[1];
  const line = lineNumber === undefined ? undefined : input.split('\n')[Number(lineNumber) - 1];
  return line === undefined ? message : `${message}; input line ${lineNumber}: ${line}`;
}
