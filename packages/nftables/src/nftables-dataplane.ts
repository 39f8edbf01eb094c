// The nftables dataplane: desired state → one table of its own, applied as ONE atomic
// libnftables-json transaction per change; learned addresses live in timeout sets.
import { trustedServersOnNode } from '@dnsplane/bpf-parser';
import {
  canonicalAddress,
  systemClock,
  type Clock,
  type Dataplane,
  type DataplaneStatus,
  type DesiredState,
  type IpFamily,
  type LearnedEntry,
  type ProcessRunner,
  type StatusOptions,
} from '@dnsplane/core';
import { desiredTable, type DesiredTable, type DesiredTableOptions } from './desired-table.js';
import { forwardGateView, forwardGates, quietGateChains, readLegacyTables } from './forward-gates.js';
import { LibnftablesExecutor, NftCliExecutor, loadAddon, type NftExecutor } from './executor.js';
import { silentLogger, type NftHandle, type NftLogger } from './handle.js';
import { JsonNftHandle } from './json-handle.js';
import type { LearnedSource } from './learned-source.js';
import { DEFAULT_ANSWER_MARK, DEFAULT_MARK_MASK, markAssignmentJson, parseAnswerMark, parseMarkMask } from './mark-bits.js';
import { bpfTcMembershipKernel } from './bpf-kernel.js';
import { TcMembership, type MirrorProbe, type TcMembershipKernel } from './tc-membership.js';
import { DEFAULT_TABLE_NAME, assertTableName, domainSetName } from './names.js';
import type { NftElementValue, NftTableRef } from './nft-model.js';
import { planCreation, planInstall } from './plan.js';
import { policyCounters } from './policy-counters.js';
import { nftProcessRunner } from './process-runner.js';
import { renderDocument, serializeDocument } from './render-json.js';
import type { NftBaseChainRef, NftSetSnapshot, NftTableSnapshot } from './snapshot.js';
import { NftTransaction } from './transaction.js';
import { StepTimer } from './step-timer.js';

export interface NftablesDataplaneOptions {
  /** Name of the inet table dnsplane owns (default "dnsplane"; tests use "dnsplane_t<random>"). */
  readonly tableName?: string;
  /** How to reach nft: the libnftables addon, the nft binary, or the addon when built (default). */
  readonly executor?: 'auto' | 'libnftables' | 'nft-cli';
  /** Runs `nft` for the nft-cli executor. */
  readonly processRunner?: ProcessRunner;
  /** Replaces the executor entirely (unit tests pass a FakeNftHandle). */
  readonly handle?: NftHandle;
  readonly clock?: Clock;
  readonly logger?: NftLogger;
  /** Batches of learned entries to mirror into the nft sets (the inline-learning seam). */
  readonly learnedSource?: LearnedSource;
  /** Packet-mark bits for kernel membership (number or "0x00ff0000"; default 0x00ff0000). */
  readonly markMask?: number | string;
  /**
   * Take enforced workloads' UDP DNS with trusted servers out of connection tracking and admit
   * the answers by the parser's verification (the answerMark bit) instead; needs pinRoot —
   * without the parser nothing is untracked. `auto` (the default): only while no other firewall
   * of the namespace could drop untracked answers or NAT the queries (forward-gates.ts), decided
   * at each install and looked at again by missingObjects (the drift check).
   */
  readonly untrackDns?: boolean | 'auto';
  /** The namespace's iptables-legacy table names (default: /proc/net/ip{,6}_tables_names). */
  readonly legacyTables?: () => readonly string[];
  /** The verified-answer mark: one bit outside markMask (number or "0x04000000"; default 0x04000000). */
  readonly answerMark?: number | string;
  /**
   * bpffs folder of the parser's and marker's pins. When set, install() loads (or reuses)
   * them, attaches them with tc, and mirrors the parser's learned events into the nft sets
   * (the inline guarantee); when absent, the driver programs nft only.
   */
  readonly pinRoot?: string;
  /** Replaces the bpf-parser kernel side (tests). Used only with pinRoot. */
  readonly tcKernel?: TcMembershipKernel;
  /**
   * How often the mirror reads learned events that did not wake it, ms (default bpf-parser's
   * LEARNED_EVENTS_DRAIN_INTERVAL_MS, 1 s): sets with a mark bit reach their nft sets within it;
   * the parser wakes the mirror at once for the sets that rely on their nft set alone.
   * Used only with pinRoot.
   */
  readonly mirrorDrainIntervalMs?: number;
  /** Called after each mirrored batch with its timing (measurements). Used only with pinRoot. */
  readonly mirrorProbe?: MirrorProbe;
  /** Collects install step durations (logged with "nftables: installed"); shared with the tc kernel side. */
  readonly stepTimer?: StepTimer;
  /** Loads the parser ahead of install (prepare()); resolves to whether pinned programs were reused. Used only with pinRoot. */
  readonly prepareParser?: (pinRoot: string) => Promise<boolean>;
  /** Undoes a prepareParser that no install used (close() calls it). */
  readonly discardPrepared?: () => void;
  /**
   * How an existing element gets a later expiry: `update`, one add carrying `expires` (kernels
   * since 6.12 update an element in place); `replace`, add + delete + add in one transaction
   * (older kernels ignore a re-add). Default `probe`: the driver tries an update once, on a set
   * of its own table, before its first refresh.
   */
  readonly elementRefresh?: ElementRefresh | 'probe';
}

export type ElementRefresh = 'update' | 'replace';

export interface AddLearnedResult {
  /** Entries written (new, or refreshed to a later expiry). */
  readonly written: number;
  /** Entries whose element already expires at or after the requested time. */
  readonly unchanged: number;
  /** Entries for unknown domain sets or already expired. */
  readonly ignored: number;
}

const SET_NAME = /^(ds_[0-9a-f]+)_v([46])$/;
/** The set the refresh probe creates and deletes (not a domain set's name: never read as one). */
const PROBE_SET = 'probe_element_refresh';
const PROBE_ADDRESS = '198.18.0.1';
/** Entries per turn of a restore or catch-up (~0.3–0.7 s of nft work each at 100,000). */
const IMPORT_TURN_ENTRIES = 10_000;
/**
 * With the kernel maps loaded, an export reads the nft sets' elements from what the driver knows
 * (#expiries) for this long after a listing of the whole table, and lists the table again after.
 */
const RELIST_AFTER_MS = 600_000;
/**
 * #expiries forgets an element this long after its bound: by then it is gone from the kernel (a
 * bound is early by at most a second and the length of the listing it came from).
 */
const FORGET_AFTER_MS = 60_000;

/** The addresses of a set whose expiry bound lies after `now`. */
function countLive(bounds: ReadonlyMap<string, number> | undefined, now: number): number {
  let live = 0;
  for (const expiresAt of bounds?.values() ?? []) if (expiresAt > now) live += 1;
  return live;
}

const sumAdded = (a: AddLearnedResult, b: AddLearnedResult): AddLearnedResult => ({
  written: a.written + b.written,
  unchanged: a.unchanged + b.unchanged,
  ignored: a.ignored + b.ignored,
});

export class NftablesDataplane implements Dataplane {
  readonly kind = 'nftables';
  readonly table: NftTableRef;
  readonly #handle: NftHandle;
  readonly #clock: Clock;
  readonly #logger: NftLogger;
  readonly #onClose: Array<() => void> = [];
  /** Domain set id → base set name, from the last installed state. */
  #setNames = new Map<number, string>();
  /**
   * nft set name → address → a lower bound of the element's expiry (ms); drives refresh
   * decisions. A write records when its timeout ends counted from before the write; a listing,
   * which nft's JSON gives in whole seconds truncated, records the clock before it plus those
   * seconds, or keeps a later bound already held for the element (#rememberExpiries). A set
   * is read from the kernel the first time it is written (then kept up to date here).
   */
  #expiries = new Map<string, Map<string, number>>();
  /**
   * When #expiries last held every element of the table: a listing of all its sets, or this
   * process creating the table. Undefined: never, or the table was removed.
   */
  #wholeTableAt: number | undefined;
  #serial: Promise<unknown> = Promise.resolve();
  readonly #markMask: number;
  /** What desiredTable gets besides the state: mark bits, the answer mark (0: DNS stays tracked). */
  readonly #tableOptions: DesiredTableOptions;
  readonly #membership: TcMembership | undefined;
  /** The node's own addresses (the tc kernel's view; absent without the parser). */
  readonly #nodeAddresses: (() => ReadonlySet<string>) | undefined;
  readonly #pinRoot: string | undefined;
  /** The nft sets were caught up with the kernel membership maps once (later installs skip it). */
  #caughtUp = false;
  readonly #timer: StepTimer;
  readonly #prepareParser: ((pinRoot: string) => Promise<boolean>) | undefined;
  readonly #discardPrepared: (() => void) | undefined;
  /** The parser load prepare() started: its duration, step name, or a failure already logged. */
  #prepared: Promise<{ readonly step: string; readonly ms: number } | undefined> | undefined;
  /** #prepared has settled (the parser is loaded, or its load failed). */
  #preparedSettled = false;
  /** How refreshes are written; undefined until the probe ran (#elementRefreshMode). */
  #elementRefresh: ElementRefresh | undefined;
  /** An install went through and no remove since: the table should be there (missingObjects). */
  #installed = false;
  /** untrackDns: auto — untracking is decided at each install from the other firewalls. */
  readonly #untrackAuto: boolean;
  readonly #legacyTables: () => readonly string[];
  /**
   * The last install's decision under `auto`, when it had DNS to untrack: what gated it (empty:
   * untracked) and the other firewalls as the drift check sees them (forwardGateView).
   */
  #untrackDecision:
    | { readonly gates: readonly string[]; readonly view: readonly string[]; readonly quiet: readonly NftBaseChainRef[] }
    | undefined;

  constructor(handle: NftHandle, options: Omit<NftablesDataplaneOptions, 'handle' | 'executor' | 'processRunner'> = {}) {
    this.table = { family: 'inet', name: assertTableName(options.tableName ?? DEFAULT_TABLE_NAME) };
    this.#handle = handle;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#markMask = parseMarkMask(options.markMask ?? DEFAULT_MARK_MASK);
    const answerMark = parseAnswerMark(options.answerMark ?? DEFAULT_ANSWER_MARK, this.#markMask);
    this.#tableOptions = {
      markMask: this.#markMask,
      // Only the parser can verify answers: without it (no pinRoot) every exchange stays tracked.
      answerMark: options.untrackDns === false || options.pinRoot === undefined ? 0 : answerMark,
    };
    this.#untrackAuto = (options.untrackDns ?? 'auto') === 'auto';
    this.#legacyTables = options.legacyTables ?? readLegacyTables;
    this.#pinRoot = options.pinRoot;
    this.#timer = options.stepTimer ?? new StepTimer();
    this.#prepareParser = options.prepareParser;
    this.#discardPrepared = options.discardPrepared;
    this.#elementRefresh = options.elementRefresh === 'probe' ? undefined : options.elementRefresh;
    const tcKernel = options.tcKernel;
    this.#nodeAddresses = tcKernel === undefined ? undefined : () => tcKernel.nodeAddresses();
    if (options.pinRoot !== undefined) {
      if (options.tcKernel === undefined) throw new TypeError('nftables: pinRoot needs a tcKernel (createNftablesDataplane provides one)');
      this.#membership = new TcMembership({
        pinRoot: options.pinRoot,
        markMask: this.#markMask,
        kernel: options.tcKernel,
        clock: this.#clock,
        logger: this.#logger,
        ...(options.mirrorProbe === undefined ? {} : { probe: options.mirrorProbe }),
      });
    }
    for (const source of [options.learnedSource, this.#membership]) {
      if (source === undefined) continue;
      const unsubscribe = source.subscribe((entries) =>
        this.addLearned(entries).catch((error: unknown) =>
          this.#logger.error({ err: error, entries: entries.length }, 'nftables: mirroring learned entries failed'),
        ),
      );
      this.#onClose.push(unsubscribe);
    }
  }

  /** Called on close (e.g. to release the libnftables context the factory created). */
  onClose(callback: () => void): void {
    this.#onClose.push(callback);
  }

  /**
   * The nft document of a first install, then (after a blank line) the tc part as JSON:
   * the membership marker's endpoint → (set, bit) entries and where the parser is attached.
   */
  render(state: DesiredState): string {
    const desired = desiredTable(state, this.table, this.#optionsFor(state));
    const plan = planInstall(desired, undefined);
    const tc = {
      'dnsplane-tc': {
        // Where it goes depends on the node at install time (its interfaces, its addresses):
        // the rule is bpf-parser's parserHooks.
        parser: {
          ingress: state.dns.interfaces?.length ? [...state.dns.interfaces] : 'every interface but lo',
          egress:
            'every watched interface that is not a workload endpoint; the endpoints\' too while a trusted server is one of the node\'s addresses (not loopback)',
          lo: 'ingress only, when listed or while a trusted server is on the node (loopback ones included)',
        },
        membershipMarks: markAssignmentJson(desired.marks),
        untrackedDns: {
          answerMark: `0x${desired.untracked.answerMark.toString(16).padStart(8, '0')}`,
          interfaces: desired.untracked.interfaces,
          ...(this.#untrackAuto && desired.untracked.interfaces.length > 0
            ? { auto: 'decided at install: none while another firewall gates forwarded DNS (another table\'s forward chain with a drop policy or rules, its nat chain with rules, an iptables-legacy filter or nat table)' }
            : {}),
        },
      },
    };
    return `${serializeDocument(renderDocument(plan.transaction), true)}\n\n${JSON.stringify(tc, null, 2)}\n`;
  }

  /**
   * The table options for `state` on this node: with the trusted servers that are the node's
   * own addresses, read now (the agent installs again when they change), so the untrack rule
   * names the others and needs no per-packet route lookup.
   */
  #optionsFor(state: DesiredState): DesiredTableOptions {
    if (this.#nodeAddresses === undefined || this.#tableOptions.answerMark === 0) return this.#tableOptions;
    const serversOnNode = trustedServersOnNode(state.dns.trustedServers, this.#nodeAddresses()).map((s) => canonicalAddress(s.address) ?? s.address);
    return { ...this.#tableOptions, serversOnNode: [...new Set(serversOnNode)].sort() };
  }

  /**
   * Starts loading the DNS parser (the verifier: seconds) on a worker thread, so it overlaps
   * whatever the caller does before install() — the agent reads its resources meanwhile.
   * install() waits for it; if it fails, install() loads the parser itself (and reports).
   */
  prepare(): void {
    const pinRoot = this.#pinRoot;
    const prepareParser = this.#prepareParser;
    if (pinRoot === undefined || prepareParser === undefined || this.#prepared !== undefined || this.#caughtUp) return;
    const started = performance.now();
    this.#preparedSettled = false;
    this.#prepared = prepareParser(pinRoot).finally(() => (this.#preparedSettled = true)).then(
      (reused) => ({ step: reused ? 'parser_reused' : 'parser_load_overlapped', ms: performance.now() - started }),
      (error: unknown) => {
        this.#logger.warn({ err: error }, 'nftables: loading the parser ahead of install failed; install loads it');
        return undefined;
      },
    );
  }

  install(state: DesiredState): Promise<void> {
    return this.#exclusive(async () => {
      const timer = this.#timer;
      timer.take(); // steps of anything before this install (mirrored writes) are not its own
      const prepared = this.#prepared;
      this.#prepared = undefined;
      // Without elements: a re-install never needs them, and they can number 100,000s. The
      // listing runs in libnftables on a worker thread while the desired table is built here.
      // The other tables' base chains come with it: untrackDns auto looks at them.
      const listing = timer.timeAsync('nft_list', () => this.#handle.listRuleset(this.table));
      listing.catch(() => undefined); // awaited below; a build error must not leave it unhandled
      // untrackDns auto: built as the last install decided, built again only when the listing
      // below changes that decision (a gate came or went).
      const gatedBefore = (this.#untrackDecision?.gates.length ?? 0) > 0;
      const options = this.#optionsFor(state);
      const build = (untrack: boolean): DesiredTable => desiredTable(state, this.table, untrack ? options : { ...options, answerMark: 0 });
      let desired = timer.time('table_build', () => build(!gatedBefore));
      const membership = this.#membership;
      // The parser's domain table (CPU only) is built while this thread would wait anyway: for
      // the listing, or — while the verifier still runs — for the parser, after the inert part
      // of a first install went to libnftables.
      const buildDomainTable = (): void => {
        if (membership !== undefined) timer.time('domain_table_build', () => membership.prepareDomainTable(state.domainSets));
      };
      const verifying = prepared !== undefined && !this.#preparedSettled;
      if (!verifying) buildDomainTable();
      const ruleset = await listing;
      const current = ruleset.table;
      if (this.#untrackAuto && this.#tableOptions.answerMark !== 0) {
        const legacy = this.#legacyTables();
        const gates = forwardGates(ruleset.baseChains, this.table, legacy);
        // Another firewall would drop untracked answers or leave queries untranslated: DNS stays tracked.
        if (gates.length > 0 && !gatedBefore) desired = timer.time('table_build_tracked', () => build(false));
        if (gates.length === 0 && gatedBefore) desired = timer.time('table_build_untracked', () => build(true));
        if (gates.join('\n') !== (this.#untrackDecision?.gates ?? []).join('\n')) {
          if (gates.length > 0) {
            this.#logger.warn({ event: 'untrack_dns_off', gates }, 'nftables: DNS stays connection-tracked: another firewall in this namespace could drop untracked answers or NAT the queries (untrackDns: auto)');
          } else if (this.#untrackDecision !== undefined) {
            this.#logger.info({ event: 'untrack_dns_on' }, 'nftables: no other firewall gates forwarded DNS any more: it is untracked again (untrackDns: auto)');
          }
        }
        // Watched while it matters: gated (built tracked, so whether anything would be untracked
        // is not known), or something is untracked.
        this.#untrackDecision =
          gates.length > 0 || desired.untracked.interfaces.length > 0
            ? { gates, view: forwardGateView(ruleset.baseChains, this.table, legacy), quiet: quietGateChains(ruleset.baseChains, this.table) }
            : undefined;
      }
      const plan = timer.time('plan', () => planInstall(desired, current));
      // A table without base chains (none yet: first install, a migration onto nftables, or a
      // first install whose second step failed) enforces nothing. It gets the kernel side
      // first: when its hooks appear, the marker already marks packets to every member the
      // kernel maps hold and the parser learns, so no allowed, already-learned address is
      // denied while the parser loads. A table that enforces keeps rules first (below), so a
      // packet the marker marks always finds its rule.
      const kernelFirst = membership !== undefined && !current?.chains.some((c) => c.base !== undefined);
      let rest = plan.transaction;
      let inert: Promise<void> | undefined;
      if (kernelFirst && plan.created) {
        // The inert part (sets, regular chains: no packet reaches them) goes in on libnftables'
        // worker thread while the parser loads and the kernel side is written; the hooks after.
        const split = planCreation(desired);
        rest = split.hooks;
        inert = timer.timeAsync('nft_apply_inert', () => this.#handle.apply(split.inert));
        inert.catch(() => undefined); // awaited below
      }
      if (verifying) buildDomainTable();
      if (prepared !== undefined) {
        // The parser load ran alongside the caller's work and the steps above; what install
        // still waits for is its own step.
        const load = await timer.timeAsync('parser_prepare_wait', () => prepared);
        if (load !== undefined) timer.add(load.step, load.ms);
      }
      // The kernel membership is read back (to catch the nft sets up) after the install, not in it.
      const installKernelSide = (membership: TcMembership): void =>
        void timer.time('kernel_side', () => membership.install(state, desired.marks, desired.untracked, { exportMembership: false }));
      if (kernelFirst) installKernelSide(membership);
      else if (membership !== undefined) {
        // Answers are marked before any rule untracks their queries (pruned after, in install).
        membership.addAnswerMarks(desired.untracked);
        // No mark the new rules would read as another set's while the marker still has the old entries.
        timer.time('marks_narrow', () => membership.narrowMarks(desired.marks));
      }
      if (inert !== undefined) await timer.timeAsync('nft_apply_inert_wait', () => inert);
      if (rest.size > 0) await timer.timeAsync('nft_apply', () => this.#handle.apply(rest));
      this.#setNames = new Map(state.domainSets.map((s) => [s.id, s.name]));
      for (const name of plan.deletedSets) this.#expiries.delete(name);
      for (const name of plan.addedSets) this.#expiries.set(name, new Map()); // new sets start empty
      if (plan.created) this.#wholeTableAt = this.#clock.now();
      if (membership !== undefined) {
        if (!kernelFirst) installKernelSide(membership);
        // On the first install of this process only (from then on the mirror consumes every
        // learned event as it comes): what the kernel learned while no agent mirrored goes into
        // the nft sets in the next exclusive step, queued now — ahead of any later export,
        // import or status. The rules and the kernel side are in force already, and marked
        // sets never wait for it (the mark reads the kernel maps).
        // A table created again (someone deleted it: `flush ruleset`) starts with empty sets: the
        // same catch-up fills them from the kernel maps, which survived.
        if (!this.#caughtUp || plan.created) {
          this.#caughtUp = true;
          this.#catchUp(membership, !plan.created);
        }
      }
      this.#installed = true;
      this.#logger.info(
        {
          table: this.table.name,
          created: plan.created,
          operations: plan.transaction.size,
          addedSets: plan.addedSets,
          deletedSets: plan.deletedSets,
          addedChains: plan.addedChains.length,
          replacedChains: plan.replacedChains,
          deletedChains: plan.deletedChains,
          timingsMs: timer.take(),
        },
        'nftables: installed',
      );
    });
  }

  /**
   * Reads the kernel's membership and writes it into the nft sets (queued, not awaited). `listFirst`: the
   * table existed before this process, so what its sets hold is read in ONE listing (not one
   * listing per set, which takes minutes with 1,000 sets and 100,000 elements).
   */
  #catchUp(membership: TcMembership, listFirst: boolean): void {
    const start = performance.now();
    // The listing and the first IMPORT_TURN_ENTRIES in the turn install() queues, so the next
    // operation sees a catch-up of that size done; the rest, if any, in turns of its own.
    const synced = this.#exclusive(async () => {
      const inKernel = membership.exportLearned() ?? [];
      if (inKernel.length === 0) return undefined;
      if (listFirst) {
        const known = new Set(this.#setNames.values());
        const { listedAt } = await this.#listRemembering((name) => known.has(SET_NAME.exec(name)?.[1] ?? ''));
        this.#wholeTableAt = listedAt; // every set of the installed state
      }
      return { inKernel, first: await this.#addLearned(inKernel.slice(0, IMPORT_TURN_ENTRIES)) };
    }).then(async (caughtUp) => {
      if (caughtUp === undefined) return;
      const { inKernel, first } = caughtUp;
      const rest = await this.#addLearnedInTurns(inKernel.slice(IMPORT_TURN_ENTRIES));
      this.#logger.info(
        { ...sumAdded(first, rest), membership: inKernel.length, ms: Math.round(performance.now() - start) },
        'nftables: nft sets synced from the kernel membership maps',
      );
    });
    synced.catch((error: unknown) => this.#logger.error({ err: error }, 'nftables: syncing the nft sets from the kernel membership maps failed'));
  }

  /**
   * Writes many entries (a restore, a catch-up) IMPORT_TURN_ENTRIES at a time, each part its
   * own turn: the mirror's writes queued meanwhile go between the parts, instead of waiting
   * seconds behind 100,000 elements (the sets that rely on the mirror alone have nothing else).
   */
  async #addLearnedInTurns(entries: readonly LearnedEntry[]): Promise<AddLearnedResult> {
    let total: AddLearnedResult = { written: 0, unchanged: 0, ignored: 0 };
    for (let from = 0; from < entries.length; from += IMPORT_TURN_ENTRIES) {
      total = sumAdded(total, await this.addLearned(entries.slice(from, from + IMPORT_TURN_ENTRIES)));
    }
    return total;
  }

  /**
   * Write learned entries as set elements with timeouts in whole seconds, rounded up. An
   * element that exists is refreshed by delete + add in the same transaction (re-adding with
   * the same timeout keeps the old expiry), and only when the new expiry is later.
   */
  addLearned(entries: readonly LearnedEntry[]): Promise<AddLearnedResult> {
    return this.#exclusive(() => this.#addLearned(entries));
  }

  async #addLearned(entries: readonly LearnedEntry[]): Promise<AddLearnedResult> {
    const now = this.#clock.now();
    let ignored = 0;
    let unchanged = 0;
    const unknownSets = new Set<number>();
    let expired = 0;
    // (set id, family) → the nft set's name and address → the latest requested expiry (the
    // membership's own, not rounded). Keyed by number: no set name built per entry.
    const wanted = new Map<number, { readonly set: string; readonly addresses: Map<string, number> }>();
    for (const entry of entries) {
      const base = this.#setNames.get(entry.setId);
      const live = entry.expiresAt > now;
      if (base === undefined) unknownSets.add(entry.setId);
      else if (!live) expired++;
      if (base === undefined || !live) {
        ignored++;
        continue;
      }
      const slot = entry.setId * 2 + (entry.family === 6 ? 1 : 0);
      let perSet = wanted.get(slot);
      if (perSet === undefined) wanted.set(slot, (perSet = { set: domainSetName({ name: base }, entry.family), addresses: new Map() }));
      perSet.addresses.set(entry.address, Math.max(perSet.addresses.get(entry.address) ?? 0, entry.expiresAt));
    }
    const tx = new NftTransaction();
    const written: Array<[string, string, number]> = [];
    for (const { set, addresses } of wanted.values()) {
      const known = await this.#knownExpiries(set, now);
      const fresh: NftElementValue[] = [];
      const refreshed: Array<{ readonly value: string; readonly timeout: number }> = [];
      for (const [address, wantedAt] of addresses) {
        // `current` is a lower bound of the element's expiry (#expiries): compared with the
        // membership's exact expiry, not with the whole second the write would round it up to,
        // an element that already outlives the membership is left alone.
        const current = known?.get(address);
        if (current !== undefined && current > now && current >= wantedAt) {
          unchanged++;
          continue;
        }
        const seconds = Math.ceil((wantedAt - now) / 1000);
        // the kernel starts the timeout at the commit, after `now`: a lower bound again
        const expiresAt = now + seconds * 1000;
        // `known` holds every element this agent wrote or listed: an address it lacks is not in
        // the set, and a plain add suffices (a third of the work when 100,000s are restored).
        (current === undefined ? fresh : refreshed).push({ value: address, timeout: seconds });
        written.push([set, address, expiresAt]);
      }
      const object = (list: readonly NftElementValue[]) =>
        ({ kind: 'element', element: { table: this.table, set, elements: list } }) as const;
      if (fresh.length > 0) tx.add(object(fresh));
      if (refreshed.length === 0) continue;
      if ((await this.#elementRefreshMode()) === 'update') {
        // one add that carries the new expiry: the kernel updates the element in place
        tx.add(object(refreshed.map((e) => ({ ...e, expires: e.timeout }))));
        continue;
      }
      // add (so the delete cannot fail), delete (drops the old expiry), add (the new one).
      tx.add(object(refreshed));
      tx.delete(object(refreshed.map((e) => ({ value: e.value }))));
      tx.add(object(refreshed));
    }
    if (unknownSets.size > 0) {
      this.#logger.warn({ setIds: [...unknownSets] }, 'nftables: learned entries for domain sets that are not installed were ignored');
    }
    if (expired > 0) this.#logger.debug({ expired }, 'nftables: expired learned entries ignored');
    if (tx.size > 0) {
      await this.#handle.apply(tx);
      for (const [set, address, expiresAt] of written) {
        const perSet = this.#expiries.get(set) ?? new Map<string, number>();
        this.#expiries.set(set, perSet);
        perSet.set(address, expiresAt);
      }
    }
    return { written: written.length, unchanged, ignored };
  }

  /**
   * The kernel membership maps' entries when loaded, and the nft sets' elements the maps lack.
   * Where both hold an entry the map's expiry is the one: it is the membership's own, and the
   * element a copy rounded up to a whole second. Taking the later one (as before 2026-12-03)
   * moved every membership up to a second later on each restart, and the restore then rewrote
   * every element and every map entry to the moved expiry.
   */
  async exportLearned(): Promise<LearnedEntry[]> {
    const fromNft = await this.#exportNft();
    const fromKernel = this.#membership?.exportLearned();
    if (fromKernel === undefined) return fromNft;
    // set id → the addresses taken (an address's text names its family); no key string per
    // entry: this runs over 100,000 entries of each side every 30 s.
    const taken = new Map<number, Set<string>>();
    const merged: LearnedEntry[] = [];
    const take = (entry: LearnedEntry): void => {
      if (!this.#setNames.has(entry.setId)) return;
      let addresses = taken.get(entry.setId);
      if (addresses === undefined) taken.set(entry.setId, (addresses = new Set()));
      if (addresses.has(entry.address)) return;
      addresses.add(entry.address);
      merged.push(entry);
    };
    fromKernel.forEach(take);
    fromNft.forEach(take);
    return merged;
  }

  /**
   * The nft sets' elements. With the kernel maps loaded (they hold the memberships; the elements
   * only add what the maps lack) and a listing of the whole table less than RELIST_AFTER_MS old,
   * from what the driver knows: the daemon exports every 30 s to save its state, and a listing of
   * 100,000 elements costs seconds of CPU. Otherwise, and then every RELIST_AFTER_MS, listed — which
   * also brings the driver's view back in step if something else changed the table.
   */
  #exportNft(): Promise<LearnedEntry[]> {
    return this.#exclusive(async () => {
      if (this.#membership !== undefined && this.#wholeTableKnown(this.#clock.now())) return this.#knownEntries();
      if ((await this.#listWholeTable()) === undefined) return [];
      return this.#knownEntries();
    });
  }

  /**
   * Restored or migrated entries go into the nft sets and, once install() loaded the parser,
   * into the kernel membership maps as well, so the mark path honours them too.
   */
  async importLearned(entries: readonly LearnedEntry[]): Promise<void> {
    const now = this.#clock.now();
    const live = entries.filter((e) => e.expiresAt > now && this.#setNames.has(e.setId));
    const start = performance.now();
    const kernel = this.#membership?.importLearned(live);
    const nft = await this.#addLearnedInTurns(entries.filter((e) => e.expiresAt > now));
    this.#logger.info(
      { ...nft, ...(kernel !== undefined ? { kernelWritten: kernel } : {}), entries: entries.length, ms: Math.round(performance.now() - start) },
      'nftables: learned entries imported',
    );
  }

  /**
   * `counters` (a metrics scrape): the table listed without its elements, and each set's
   * element count from what the driver knows (#expiries) while a listing of the whole table is
   * less than RELIST_AFTER_MS old, as the export does — a full listing costs ~1.3 s at 100,000
   * elements and holds every other call of this driver meanwhile. Without such a listing (a
   * restart, or the last one too old) the scrape takes one, which the next scrapes count from.
   */
  status(options: StatusOptions = {}): Promise<DataplaneStatus> {
    return this.#exclusive(async () => {
      const now = this.#clock.now();
      // Counting from what the driver knows needs a recent listing of the whole table; without
      // one the scrape takes that listing (and stamps it) instead of a terse one first.
      const counting = options.detail === 'counters' && this.#wholeTableKnown(now);
      let snapshot =
        counting ? await this.#handle.listTable(this.table, { elements: false })
        : options.detail === 'counters' ? await this.#listWholeTable()
        : await this.#handle.listTable(this.table);
      let elements: (set: NftSetSnapshot) => number = (set) => set.elements.length;
      if (counting && snapshot !== undefined) {
        if (snapshot.sets.every((set) => this.#expiries.has(set.name))) elements = (set) => countLive(this.#expiries.get(set.name), now);
        else snapshot = await this.#listWholeTable(); // a set the driver holds no bounds for
      }
      if (snapshot === undefined) return { kind: this.kind, objects: [], counters: {}, learned: 0 };
      const prefix = `${this.table.family} ${this.table.name}`;
      const counters: Record<string, number> = {};
      let learned = 0;
      for (const set of snapshot.sets) {
        const count = elements(set);
        counters[`elements.${set.name}`] = count;
        learned += count;
      }
      counters['chains'] = snapshot.chains.length;
      counters['rules'] = snapshot.chains.reduce((n, c) => n + c.rules.length, 0);
      Object.assign(counters, policyCounters(snapshot));
      Object.assign(counters, this.#membership?.counters() ?? {});
      // untrackDns auto: what kept DNS tracked at the last install (0: untracked, or nothing to untrack)
      if (this.#untrackAuto) counters['untrack_dns_gates'] = this.#untrackDecision?.gates.length ?? 0;
      return {
        kind: this.kind,
        objects: [
          `nft table ${prefix}`,
          ...snapshot.chains.map((c) => `nft chain ${prefix} ${c.name}`),
          ...snapshot.sets.map((s) => `nft set ${prefix} ${s.name}`),
        ],
        counters,
        learned,
      };
    });
  }

  /**
   * The table, when an install put it there and it is gone (`nft flush ruleset`, as Debian's
   * nftables.service does on every start and reload, or `nft delete table`). One listing of the
   * table names: cheap at any scale. Changes inside the table are not looked for: nothing but
   * dnsplane writes there. With the parser: also its tc filters and the marker's (one query each).
   */
  missingObjects(): Promise<string[]> {
    return this.#exclusive(async () => {
      if (!this.#installed) return [];
      const tables = await this.#handle.listTables();
      const present = tables.some((t) => t.family === this.table.family && t.name === this.table.name);
      return [
        ...(present ? [] : [`nft table ${this.table.family} ${this.table.name}`]),
        ...(this.#membership?.missingFilters() ?? []),
        ...(present ? await this.#untrackOutdated() : []),
      ];
    });
  }

  /**
   * untrackDns auto: the other firewalls changed since the install decided (a forward or nat
   * chain of another table came, went or changed its policy, or one that was empty got rules; a
   * legacy filter or nat table came), so the decision is due again — reported like a missing
   * object, which makes the daemon install again. One `list chains` (no rules, no elements) and
   * one `list chain` per chain that was empty.
   */
  async #untrackOutdated(): Promise<string[]> {
    const decision = this.#untrackDecision;
    if (decision === undefined) return [];
    const view = forwardGateView(await this.#handle.listBaseChains(), this.table, this.#legacyTables());
    const came = view.filter((v) => !decision.view.includes(v));
    const went = decision.view.filter((v) => !view.includes(v));
    // Chains that were empty at the install: rules in them now (the view above cannot show it).
    if (came.length === 0 && went.length === 0) {
      for (const chain of decision.quiet) {
        if (((await this.#handle.countRules(chain)) ?? 0) > 0) came.push(`rules in nft table ${chain.family} ${chain.table}: ${chain.type} chain ${chain.name}`);
      }
    }
    if (came.length === 0 && went.length === 0) return [];
    const changes = [...(came.length > 0 ? [`came: ${came.join(', ')}`] : []), ...(went.length > 0 ? [`went: ${went.join(', ')}`] : [])];
    return [`untracked DNS to decide again (untrackDns: auto): ${changes.join('; ')}`];
  }

  remove(): Promise<void> {
    return this.#exclusive(async () => {
      const tables = await this.#handle.listTables();
      if (tables.some((t) => t.family === this.table.family && t.name === this.table.name)) {
        await this.#handle.apply(new NftTransaction().delete({ kind: 'table', table: this.table }));
        this.#logger.info({ table: this.table.name }, 'nftables: table removed');
      }
      this.#expiries.clear();
      this.#wholeTableAt = undefined;
      this.#caughtUp = false;
      this.#installed = false;
      this.#untrackDecision = undefined;
      if (this.#membership !== undefined) {
        this.#membership.remove();
        this.#logger.info({ pinRoot: this.#pinRoot }, 'nftables: tc programs detached, pins removed');
      }
    });
  }

  /** Stops consuming learned events; tc programs, pins and the table stay in force. */
  async close(): Promise<void> {
    await this.#prepared; // never rejects (a failure is logged)
    await this.#serial.catch(() => undefined);
    // Prepared but never installed (e.g. the resources did not validate): nothing stays of it.
    this.#discardPrepared?.();
    for (const callback of this.#onClose.splice(0)) callback();
    this.#membership?.close();
  }

  /**
   * Whether the kernel updates an existing element's expiry in place (since 6.12) or ignores a
   * re-add (before): decided once, by trying it on a set of this driver's own table — an element
   * with 60 s, re-added with `expires` 30 s, listed. The set is deleted again whatever happens;
   * any failure means `replace`, which works on every kernel. Called within #exclusive.
   */
  async #elementRefreshMode(): Promise<ElementRefresh> {
    if (this.#elementRefresh !== undefined) return this.#elementRefresh;
    const set = { table: this.table, name: PROBE_SET, type: 'ipv4_addr', flags: ['timeout'] } as const;
    const element = (extra: { readonly expires?: number }) =>
      ({ kind: 'element', element: { table: this.table, set: PROBE_SET, elements: [{ value: PROBE_ADDRESS, timeout: 60, ...extra }] } }) as const;
    let mode: ElementRefresh = 'replace';
    try {
      await this.#handle.apply(new NftTransaction().add({ kind: 'set', set }).add(element({})));
      await this.#handle.apply(new NftTransaction().add(element({ expires: 30 })));
      const listed = await this.#handle.listSet(this.table, PROBE_SET);
      const expires = listed?.elements.find((e) => e.value === PROBE_ADDRESS)?.expires;
      if (expires !== undefined && expires <= 30) mode = 'update';
    } catch (error) {
      this.#logger.warn({ err: error }, 'nftables: the element refresh probe failed; refreshing by delete and add');
    } finally {
      await this.#handle.apply(new NftTransaction().delete({ kind: 'set', set })).catch(() => undefined);
    }
    this.#elementRefresh = mode;
    this.#logger.info({ elementRefresh: mode }, 'nftables: how existing elements get a later expiry');
    return mode;
  }

  async #knownExpiries(set: string, now: number): Promise<Map<string, number>> {
    let known = this.#expiries.get(set);
    if (known === undefined) {
      const snapshot = await this.#handle.listSet(this.table, set);
      known = new Map(
        (snapshot?.elements ?? []).filter((e) => e.expires !== undefined).map((e) => [e.value, now + (e.expires ?? 0) * 1000]),
      );
      this.#expiries.set(set, known);
    }
    return known;
  }

  /**
   * The elements #expiries holds, their bounds as expiries (a set not installed by this process
   * — a migration's source — by the id in its name). An element whose bound has passed is left
   * out, and forgotten FORGET_AFTER_MS after it (until then it may still be in the kernel: a
   * bound is up to a second and a listing's length early, and an address #expiries lacks is
   * written with a plain add, which would not refresh it).
   */
  #knownEntries(): LearnedEntry[] {
    const now = this.#clock.now();
    const ids = new Map([...this.#setNames].map(([id, name]) => [name, id]));
    const entries: LearnedEntry[] = [];
    for (const [set, bounds] of this.#expiries) {
      const parsed = SET_NAME.exec(set);
      if (parsed === null) continue;
      const [, base = '', family] = parsed;
      const setId = ids.get(base) ?? Number.parseInt(base.slice(3), 16);
      for (const [address, expiresAt] of bounds) {
        if (expiresAt > now) entries.push({ setId, family: (family === '4' ? 4 : 6) as IpFamily, address, expiresAt });
        else if (expiresAt < now - FORGET_AFTER_MS) bounds.delete(address);
      }
    }
    return entries;
  }

  /** #expiries holds every element of the table, from a listing less than RELIST_AFTER_MS old (or the table's creation). */
  #wholeTableKnown(now: number): boolean {
    return this.#wholeTableAt !== undefined && now - this.#wholeTableAt < RELIST_AFTER_MS;
  }

  /** Lists the whole table with its elements into #expiries (#wholeTableAt: then); undefined when the table is gone. */
  async #listWholeTable(): Promise<NftTableSnapshot | undefined> {
    const { snapshot, listedAt } = await this.#listRemembering(() => true);
    if (snapshot !== undefined) this.#wholeTableAt = listedAt;
    return snapshot;
  }

  /** Lists the table and takes the expiry bounds of the sets `keep` accepts from it (#rememberExpiries). */
  async #listRemembering(keep: (set: string) => boolean): Promise<{ snapshot: NftTableSnapshot | undefined; listedAt: number }> {
    const listedAt = this.#clock.now();
    const snapshot = await this.#handle.listTable(this.table);
    const kept = new Set((snapshot?.sets ?? []).map((s) => s.name).filter(keep));
    this.#rememberExpiries(snapshot, kept, { from: listedAt, to: this.#clock.now() });
    return { snapshot, listedAt };
  }

  /**
   * Replaces what #expiries knows with a listing taken between `listed.from` and `listed.to`.
   * Each element's bound is `from` plus its whole seconds left (the kernel counted them from a
   * moment in between, and truncated). A later bound this process already holds for the element
   * (it wrote it, or an earlier listing said so) is kept while the listing allows it, i.e.
   * before `to` plus the listed seconds plus one: otherwise every listing would lower the bounds
   * by up to a second and the next restore would rewrite about every element it compares.
   */
  #rememberExpiries(snapshot: NftTableSnapshot | undefined, keep: ReadonlySet<string>, listed: { readonly from: number; readonly to: number }): void {
    const next = new Map<string, Map<string, number>>();
    for (const set of snapshot?.sets ?? []) {
      if (!keep.has(set.name)) continue;
      const held = this.#expiries.get(set.name);
      const bounds = new Map<string, number>();
      for (const element of set.elements) {
        if (element.expires === undefined) continue;
        const bound = listed.from + element.expires * 1000;
        const before = held?.get(element.value);
        const possible = before !== undefined && before < listed.to + element.expires * 1000 + 1000;
        bounds.set(element.value, possible && before > bound ? before : bound);
      }
      next.set(set.name, bounds);
    }
    this.#expiries = next;
  }

  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(work, work);
    this.#serial = run.catch(() => undefined);
    return run;
  }
}

function createExecutor(options: NftablesDataplaneOptions, logger: NftLogger): NftExecutor {
  const runner = options.processRunner ?? nftProcessRunner;
  switch (options.executor ?? 'auto') {
    case 'libnftables':
      return LibnftablesExecutor.create();
    case 'nft-cli':
      return new NftCliExecutor(runner);
    case 'auto': {
      const addon = loadAddon();
      if (addon !== undefined) return new LibnftablesExecutor(addon);
      logger.warn({}, 'nftables: libnftables addon not built, falling back to the nft binary');
      return new NftCliExecutor(runner);
    }
  }
}

export function createNftablesDataplane(options: NftablesDataplaneOptions = {}): NftablesDataplane {
  const logger = options.logger ?? silentLogger;
  const stepTimer = options.stepTimer ?? new StepTimer();
  let withKernel: NftablesDataplaneOptions = { ...options, stepTimer };
  if (options.pinRoot !== undefined && options.tcKernel === undefined) {
    const tcKernel = bpfTcMembershipKernel(
      options.clock ?? systemClock,
      stepTimer,
      options.mirrorDrainIntervalMs === undefined ? {} : { drainIntervalMs: options.mirrorDrainIntervalMs },
    );
    withKernel = {
      ...withKernel,
      tcKernel,
      prepareParser: (pinRoot) => tcKernel.prepareParser(pinRoot),
      discardPrepared: () => tcKernel.discardPrepared(),
    };
  }
  if (options.handle !== undefined) return new NftablesDataplane(options.handle, withKernel);
  const executor = createExecutor(options, logger);
  const dataplane = new NftablesDataplane(new JsonNftHandle(executor, logger), withKernel);
  dataplane.onClose(() => executor.close());
  return dataplane;
}

