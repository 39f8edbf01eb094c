// TcMembershipKernel over @dnsplane/bpf-parser: the DNS parser (DnsParserProgram) and the
// membership marker (MembershipMarker), attached with tc at bpf-parser's fixed slots
// (DNSPLANE_TC_FILTERS), so a re-attach replaces and `remove()` finds them from any process.
import { existsSync } from 'node:fs';
import type { Clock, DomainSet } from '@dnsplane/core';
import {
  DnsParserProgram,
  buildDomainTable,
  encodeDomainTable,
  type DomainTable,
  type EncodedDomainTable,
  LearnedEventConsumer,
  MembershipMarker,
  detachDnsplaneTc,
  ktimeNs,
  nodeAddresses,
  queryDnsplaneTc,
} from '@dnsplane/bpf-parser';
import { isNotFound } from '@dnsplane/core';
import type { MarkerHandle, ParserHandle, TcDirection, TcMembershipKernel, TcProgramKind } from './tc-membership.js';
import { sysfsInterfaces } from './tc-membership.js';
import { StepTimer } from './step-timer.js';

const FILTER_OF: Readonly<Record<TcProgramKind, 'parser' | 'membershipMark'>> = {
  parser: 'parser',
  marker: 'membershipMark',
};

/**
 * `timer` (optional) receives the duration of the steps that dominate an install at scale:
 * parser_load (parser_reused when the pinned program was taken as it is), parser_domain_sets,
 * parser_export, parser_import.
 */
/** The tc kernel side, able to load the parser ahead of install (see NftablesDataplane.prepare). */
export interface PreparableTcMembershipKernel extends TcMembershipKernel {
  /**
   * Loads the parser for `pinRoot` with the verifier on a worker thread; the next
   * loadParser(pinRoot) takes it. Resolves to whether pinned programs were reused.
   */
  prepareParser(pinRoot: string): Promise<boolean>;
  /** Closes a prepared parser no loadParser took, and removes the pin root if preparing created it. */
  discardPrepared(): void;
}

/**
 * The nice value the prepared parser load's worker thread verifies at. On a cold start the
 * verifier is the longest step (~1.2-1.4 s alone on the 2-core development machine) and the
 * agent's other threads (the resources on the main thread, the inert nft transaction, V8's
 * garbage collection and compiler) have time to spare beside it, but at equal priority they
 * share its CPU and the verifier took 1.5-2.4 s. Only that thread, only for the load's
 * duration; without CAP_SYS_NICE the load runs at the thread's own value.
 */
const PREPARE_LOAD_NICE = -10;

export function bpfTcMembershipKernel(
  clock: Clock,
  timer: StepTimer = new StepTimer(),
  events: { readonly drainIntervalMs?: number } = {},
): PreparableTcMembershipKernel {
  // Only the tc entry point (nftables never uses the socket filter: half the verification),
  // pinned by object hash and reused on restart (no verification at all).
  const options = (pinRoot: string) => ({ pinRoot, entries: ['tc'] as const, reusePrograms: true });
  let prepared: { readonly pinRoot: string; readonly parser: DnsParserProgram; readonly created: boolean } | undefined;
  let domainTable: { readonly sets: readonly DomainSet[]; readonly table: DomainTable; readonly encoded: EncodedDomainTable[] } | undefined;
  /** The prepared load under way: whether it creates the pin root (and so fresh maps). */
  let loading: { readonly created: boolean } | undefined;
  return {
    prepareDomainTable(sets: readonly DomainSet[]): void {
      try {
        const table = buildDomainTable(sets);
        // Its map contents too (~50 ms for 10,000 names), off the kernel side — but only while the
        // prepared load runs (a cold start: the verifier, which install waits for anyway), for the
        // generation the parser writes next: 1 on maps this load creates (a fresh table map holds
        // generation 0), else either. Otherwise (a restart, a re-apply) setDomainSets encodes:
        // this thread's work here delays the table listing install waits for, and it took as much
        // as it saved after (restart install 571-705 against 507-578 ms, 16:21-16:40 UTC).
        const generations = loading === undefined ? [] : loading.created ? ([1] as const) : ([0, 1] as const);
        domainTable = { sets, table, encoded: generations.map((generation) => encodeDomainTable(table, generation)) };
      } catch {
        domainTable = undefined; // setDomainSets builds it again and reports the problem where it always did
      }
    },
    async prepareParser(pinRoot: string): Promise<boolean> {
      const created = !existsSync(pinRoot);
      const current = { created };
      loading = current;
      try {
        const parser = await DnsParserProgram.loadAsync({ ...options(pinRoot), loadNice: PREPARE_LOAD_NICE });
        prepared?.parser.close();
        prepared = { pinRoot, parser, created };
        return parser.reused;
      } finally {
        if (loading === current) loading = undefined;
      }
    },
    discardPrepared(): void {
      if (prepared === undefined) return;
      prepared.parser.close();
      if (prepared.created) DnsParserProgram.removePins(prepared.pinRoot);
      prepared = undefined;
    },
    loadParser(pinRoot: string): ParserHandle {
      let parser: DnsParserProgram;
      if (prepared !== undefined && prepared.pinRoot === pinRoot) {
        parser = prepared.parser;
        prepared = undefined;
      } else {
        const start = performance.now();
        parser = DnsParserProgram.load(options(pinRoot));
        timer.add(parser.reused ? 'parser_reused' : 'parser_load', performance.now() - start);
      }
      return {
        configure: (dns) => parser.configure(dns),
        setDomainSets: (sets, wakeSets) =>
          timer.time('parser_domain_sets', () => {
            const made = domainTable?.sets === sets ? domainTable : undefined;
            domainTable = undefined;
            return parser.setDomainSets(sets, made === undefined ? { wakeSets } : { table: made.table, encoded: made.encoded, wakeSets });
          }),
        exportLearned: (c) => timer.time('parser_export', () => parser.exportLearned(c)),
        importLearned: (entries, c) => timer.time('parser_import', () => parser.importLearned(entries, c)),
        counters: () => ({ ...parser.counters() }),
        attach: (ifname: string, direction: TcDirection) => {
          parser.attachTc(ifname, direction);
        },
        setAnswerMarks: (marks, { prune }) => parser.setAnswerMarks(marks, { prune }),
        consume: (onLearned, onError) => {
          const consumer = new LearnedEventConsumer(parser.map('events'), (entry, event) => onLearned(entry, event.expiryNs), {
            clock,
            onError,
            ...(events.drainIntervalMs === undefined ? {} : { drainIntervalMs: events.drainIntervalMs }),
          });
          return () => consumer.close();
        },
        close: () => parser.close(),
      };
    },
    loadMarker(pinRoot: string, { connectMarker }): MarkerHandle {
      const marker = MembershipMarker.load({ pinRoot, connectMarker });
      return {
        setEndpointSets: (ifindex, markMask, entries) => marker.setEndpointSets(ifindex, markMask, entries),
        endpoints: () => marker.endpoints(),
        removeEndpoint: (ifindex) => marker.removeEndpoint(ifindex),
        attach: (ifname) => {
          marker.attach(ifname);
        },
        attachHost: () => marker.attachHost(),
        detachHost: () => marker.detachHost(),
        close: () => marker.close(),
      };
    },
    detach(kind: TcProgramKind, ifname: string, direction: TcDirection): boolean {
      try {
        return detachDnsplaneTc(FILTER_OF[kind], ifname, direction);
      } catch (error) {
        if (isNotFound(error)) return false; // the interface went away
        throw error;
      }
    },
    isAttached(kind: TcProgramKind, ifname: string, direction: TcDirection): boolean {
      try {
        return queryDnsplaneTc(FILTER_OF[kind], ifname, direction) !== undefined;
      } catch {
        return false; // no clsact qdisc, or the interface went away
      }
    },
    interfaces: () => sysfsInterfaces(),
    nodeAddresses: () => nodeAddresses(),
    removePins: (pinRoot) => DnsParserProgram.removePins(pinRoot),
    clearAnswerMarks: (pinRoot) => void DnsParserProgram.clearAnswerMarks(pinRoot),
    nowNs: () => ktimeNs(),
  };
}
