// The real DnsParserHook: the bpf-parser's DnsParserProgram, loaded with its maps pinned (and
// reused) under the pin root, its socket filter pinned at a stable path that the parser rules
// name. Learned state, counters and unpinning go through the same object.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock, DnsSettings, DomainSet, LearnedEntry, ProcessRunner } from '@dnsplane/core';
import { parserCounters, systemClock } from '@dnsplane/core';
import {
  BpfMap,
  decodeExpiry,
  decodeMemberKey,
  DnsParserProgram,
  ktimeNs,
  MAP_NAMES,
  monotonicToWallMs,
  PROGRAM_NAMES,
  readCounters,
} from '@dnsplane/bpf-parser';
import { z } from 'zod';
import { DEFAULT_PIN_ROOT } from './domain-match.js';
import type { DnsParserHook } from './dns-parser-hook.js';
import { iptablesProcessRunner } from './process-runner.js';

export interface BpfDnsParserHookOptions {
  /** bpffs folder of the parser's maps and the pinned socket filter (config `bpf.pinRoot`). */
  readonly pinRoot?: string;
  readonly clock?: Clock;
  /** Default: the bpf-parser's compiled object. */
  readonly objectPath?: string;
  /** Runs bpftool (BPF objects are global: any network namespace will do). */
  readonly runner?: ProcessRunner;
}

const mapInfoSchema = z.object({ id: z.number().int() });
const programListSchema = z.array(z.object({ id: z.number().int(), type: z.string(), map_ids: z.array(z.number().int()).optional() }));

/** `<pinRoot>/dnsplane_parse_socket`: the pinned socket filter the parser rules name. */
export function parserProgramPinPath(pinRoot: string): string {
  return join(pinRoot.replace(/\/+$/, ''), PROGRAM_NAMES.socketFilter);
}

export class BpfDnsParserHook implements DnsParserHook {
  readonly pinRoot: string;
  readonly programPath: string;
  private readonly clock: Clock;
  private readonly objectPath: string | undefined;
  private readonly runner: ProcessRunner;
  private parser: DnsParserProgram | undefined;
  private pinned = false;
  /** keepLearnedEvents: another dataplane's mirror still reads the learned events. */
  private keepEvents = false;

  constructor(options: BpfDnsParserHookOptions = {}) {
    this.pinRoot = (options.pinRoot ?? DEFAULT_PIN_ROOT).replace(/\/+$/, '');
    this.programPath = parserProgramPinPath(this.pinRoot);
    this.clock = options.clock ?? systemClock;
    this.objectPath = options.objectPath;
    this.runner = options.runner ?? iptablesProcessRunner;
  }

  /** Loads the parser once per hook (maps already pinned under the pin root are reused). */
  private program(): DnsParserProgram {
    this.parser ??= DnsParserProgram.load({ pinRoot: this.pinRoot, ...(this.objectPath === undefined ? {} : { objectPath: this.objectPath }) });
    return this.parser;
  }

  async prepare(dns: DnsSettings, domainSets: readonly DomainSet[]): Promise<void> {
    const parser = this.program();
    parser.configure(dns);
    // xt_member reads the membership maps; nobody reads learned events here (unless another
    // dataplane still in force does: keepLearnedEvents).
    parser.setDomainSets(domainSets, { events: this.keepEvents });
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

  async keepLearnedEvents(keep: boolean): Promise<void> {
    this.keepEvents = keep;
    // Loaded: the table in force says it now. Not yet: the next prepare() writes it.
    this.parser?.setLearnedEvents(keep);
  }

  async exportLearned(): Promise<LearnedEntry[]> {
    if (this.parser) return this.parser.exportLearned(this.clock);
    // Not loaded by this process (status, export or remove after a restart): read the pinned
    // maps directly rather than load (and verify) the whole parser just to read them.
    const nowNs = ktimeNs();
    const nowMs = this.clock.now();
    return this.pinnedMembers(nowNs).map((m) => ({
      setId: m.setId,
      family: m.family,
      address: m.address,
      expiresAt: Math.round(monotonicToWallMs(m.expiryNs, nowNs, nowMs)),
    }));
  }

  async importLearned(entries: readonly LearnedEntry[]): Promise<void> {
    this.program().importLearned(entries, this.clock);
  }

  async statistics(): Promise<{ counters: Readonly<Record<string, number>>; learned: number }> {
    const values = this.parser ? this.parser.counters() : this.withPinnedMap('counters', readCounters);
    const counters = parserCounters(values ?? {});
    const learned = this.parser ? this.parser.learnedCount() : this.pinnedLearnedCount(ktimeNs());
    return { counters, learned };
  }

  /** Membership entries in force, from the pinned maps; none when they are not pinned. */
  private pinnedMembers(nowNs: bigint): Array<{ setId: number; family: 4 | 6; address: string; expiryNs: bigint }> {
    const out: Array<{ setId: number; family: 4 | 6; address: string; expiryNs: bigint }> = [];
    this.forEachPinnedMember(nowNs, (family, keys, keyAt, expiryNs) => out.push({ ...decodeMemberKey(family, keys, keyAt), family, expiryNs }));
    return out;
  }

  /** How many membership entries are in force, from the pinned maps (no key decoded); 0 when they are not pinned. */
  private pinnedLearnedCount(nowNs: bigint): number {
    let count = 0;
    this.forEachPinnedMember(nowNs, () => {
      count++;
    });
    return count;
  }

  /** Each membership entry of the pinned maps in force at `nowNs`, read from the batch without a copy per entry. */
  private forEachPinnedMember(nowNs: bigint, visit: (family: 4 | 6, keys: Buffer, keyAt: number, expiryNs: bigint) => void): void {
    for (const family of [4, 6] as const) {
      this.withPinnedMap(family === 4 ? 'members4' : 'members6', (map) =>
        map.forEachEntry((keys, keyAt, values, valueAt) => {
          const expiryNs = decodeExpiry(values, valueAt);
          if (expiryNs > nowNs) visit(family, keys, keyAt, expiryNs);
        }),
      );
    }
  }

  private withPinnedMap<T>(role: keyof typeof MAP_NAMES, read: (map: BpfMap) => T): T | undefined {
    const path = join(this.pinRoot, MAP_NAMES[role]);
    if (!existsSync(path)) return undefined;
    const map = BpfMap.fromPinned(path);
    try {
      return read(map);
    } finally {
      map.close();
    }
  }

  /**
   * Unpins the parser's socket filter and, unless another dataplane still uses them, the whole
   * pin root with the shared maps. The nftables and ebpf dataplanes share the parser's maps
   * under the same pin root, and a migration installs the new dataplane before it removes
   * the old one: if a program other than a socket filter (ours are socket filters; theirs are
   * tc programs) uses the membership map, the maps stay pinned for it. Returns whether the
   * pin root went.
   */
  async unpin(): Promise<boolean> {
    this.parser?.close();
    this.parser = undefined;
    this.pinned = false;
    rmSync(this.programPath, { force: true });
    if (await this.mapsUsedByOthers()) return false;
    DnsParserProgram.removePins(this.pinRoot);
    return true;
  }

  /** Does a loaded program that is not a socket filter use the pinned membership map? */
  private async mapsUsedByOthers(): Promise<boolean> {
    const mapPath = join(this.pinRoot, MAP_NAMES.members4);
    if (!existsSync(mapPath)) return false;
    const map = await this.runner.run('bpftool', ['-j', 'map', 'show', 'pinned', mapPath]);
    if (map.code !== 0) return false;
    const { id } = mapInfoSchema.parse(JSON.parse(map.stdout));
    const programs = await this.runner.run('bpftool', ['-j', 'prog', 'show']);
    // Unknown means "keep": leaving shared maps pinned is harmless, removing them is not.
    if (programs.code !== 0) return true;
    return programListSchema.parse(JSON.parse(programs.stdout)).some((p) => p.type !== 'socket_filter' && (p.map_ids ?? []).includes(id));
  }

  async close(): Promise<void> {
    this.parser?.close();
    this.parser = undefined;
    this.pinned = false;
  }
}
