// The real DnsParserHook: the bpf-parser's DnsParserProgram, loaded with its maps pinned (and
// reused) under the pin root, its socket filter pinned at a stable path that the parser rules
// name. Learned state, counters and unpinning go through the same object.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock, DnsSettings, DomainSet, LearnedEntry } from '@dnsplane/core';
import { systemClock } from '@dnsplane/core';
import { DnsParserProgram, PROGRAM_NAMES } from '@dnsplane/bpf-parser';
import { DEFAULT_PIN_ROOT } from './domain-match.js';
import type { DnsParserHook } from './dns-parser-hook.js';

export interface BpfDnsParserHookOptions {
  /** bpffs folder of the parser's maps and the pinned socket filter (config `bpf.pinRoot`). */
  readonly pinRoot?: string;
  readonly clock?: Clock;
  /** Default: the bpf-parser's compiled object. */
  readonly objectPath?: string;
}

/** `<pinRoot>/dnsplane_parse_socket`: the pinned socket filter the parser rules name. */
export function parserProgramPinPath(pinRoot: string): string {
  return join(pinRoot.replace(/\/+$/, ''), PROGRAM_NAMES.socketFilter);
}

export class BpfDnsParserHook implements DnsParserHook {
  readonly pinRoot: string;
  readonly programPath: string;
  private readonly clock: Clock;
  private readonly objectPath: string | undefined;
  private parser: DnsParserProgram | undefined;
  private pinned = false;

  constructor(options: BpfDnsParserHookOptions = {}) {
    this.pinRoot = (options.pinRoot ?? DEFAULT_PIN_ROOT).replace(/\/+$/, '');
    this.programPath = parserProgramPinPath(this.pinRoot);
    this.clock = options.clock ?? systemClock;
    this.objectPath = options.objectPath;
  }

  /** Loads the parser once per hook (maps already pinned under the pin root are reused). */
  private program(): DnsParserProgram {
    this.parser ??= DnsParserProgram.load({ pinRoot: this.pinRoot, ...(this.objectPath === undefined ? {} : { objectPath: this.objectPath }) });
    return this.parser;
  }

  async prepare(dns: DnsSettings, domainSets: readonly DomainSet[]): Promise<void> {
    const parser = this.program();
    parser.configure(dns);
    parser.setDomainSets(domainSets);
    if (!this.pinned) {
      // Pin this load's socket filter at the stable path, replacing (atomically, by rename)
      // one a previous agent left: rules installed before keep their own reference to the
      // old program, which shares these maps, until the restore re-creates them.
      const next = `${this.programPath}_next`; // bpffs refuses names with a dot
      rmSync(next, { force: true });
      parser.socketFilter.pin(next);
      renameSync(next, this.programPath);
      this.pinned = true;
    }
  }

  async exportLearned(): Promise<LearnedEntry[]> {
    if (!this.parser && !existsSync(this.pinRoot)) return [];
    return this.program().exportLearned(this.clock);
  }

  async importLearned(entries: readonly LearnedEntry[]): Promise<void> {
    this.program().importLearned(entries, this.clock);
  }

  async statistics(): Promise<{ counters: Readonly<Record<string, number>>; learned: number }> {
    if (!this.parser && !existsSync(this.pinRoot)) return { counters: {}, learned: 0 };
    const parser = this.program();
    const counters = Object.fromEntries(Object.entries(parser.counters()).map(([name, value]) => [`parser_${name}`, value]));
    return { counters, learned: parser.membership().length };
  }

  async unpin(): Promise<void> {
    this.parser?.close();
    this.parser = undefined;
    this.pinned = false;
    DnsParserProgram.removePins(this.pinRoot);
  }

  async close(): Promise<void> {
    this.parser?.close();
    this.parser = undefined;
    this.pinned = false;
  }
}
