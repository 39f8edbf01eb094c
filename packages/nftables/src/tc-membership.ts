// The kernel half of the nftables dataplane's inline guarantee (team decision 1): the DNS
// parser on tc hooks writes the membership maps; the tc membership marker, on tc ingress of
// every workload's host-side interface (its egress path, which runs before netfilter), sets
// one packet-mark bit per domain set holding the destination; the nft rules match that bit.
// Learning and enforcement therefore never wait for userspace. The node's own TCP connects (a
// host endpoint) get the same marks from the connect marker, written into the socket at
// connect(). The mirror (ring buffer → nft set elements) keeps `nft list set` the visible
// truth and serves what has no mark.
// Everything kernel-facing goes through `TcMembershipKernel`, so tests can inject it.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_ENDPOINT_KEY, entryMark, parserHooks } from '@dnsplane/bpf-parser';
import { isNotSupported, parserCounters, systemClock, workloadInterfaces, type Clock, type DesiredState, type LearnedEntry } from '@dnsplane/core';
import type { NftLogger } from './handle.js';
import type { LearnedSource } from './learned-source.js';
import type { MarkAssignment, MarkedSet } from './mark-bits.js';
import type { UntrackedDns } from './desired-table.js';

export type TcDirection = 'ingress' | 'egress';

/** The loaded parser, as this package uses it (bpf-parser's DnsParserProgram). */
export interface ParserHandle {
  configure(dns: DesiredState['dns']): void;
  /**
   * Replaces the domain table; `wakeSets`: the sets whose learned events wake the reader at
   * once (the others' are read on its slow timer).
   */
  setDomainSets(sets: DesiredState['domainSets'], wakeSets: readonly number[]): unknown;
  exportLearned(clock: Clock): LearnedEntry[];
  /** Writes entries into the membership maps (a later expiry wins); returns how many were written. */
  importLearned(entries: readonly LearnedEntry[], clock: Clock): number;
  counters(): Readonly<Record<string, number>>;
  /** Attaches the tc classifier at its fixed priority/handle (replacing what is there). */
  attach(ifname: string, direction: TcDirection): void;
  /**
   * Writes the verified-answer mark bits of these interfaces (ifindex → bits); with `prune`,
   * forgets every other interface.
   */
  setAnswerMarks(marks: ReadonlyMap<number, number>, options: { readonly prune: boolean }): void;
  /** Starts consuming learned events; returns a function that stops. */
  /** `expiryNs`: the entry's expiry as the kernel wrote it (CLOCK_MONOTONIC ns). */
  consume(onLearned: (entry: LearnedEntry, expiryNs: bigint) => void, onError: (error: unknown) => void): () => void;
  close(): void;
}

/** The loaded membership marker, as this package uses it (bpf-parser's MembershipMarker). */
export interface MarkerHandle {
  setEndpointSets(ifindex: number, markMask: number, entries: readonly MarkedSet[]): void;
  /** What the kernel map holds now (also what an earlier process programmed), by ifindex. */
  endpoints(): ReadonlyMap<number, { readonly markMask: number; readonly entries: readonly MarkedSet[] }>;
  /** Forgets an interface (its packets are no longer marked). */
  removeEndpoint(ifindex: number): boolean;
  /** Attaches the marker on the interface's tc ingress at its fixed priority/handle. */
  attach(ifname: string): void;
  /**
   * Attaches the connect marker (the node's TCP connects get the marks of the HOST_ENDPOINT_KEY
   * entry), or switches an earlier process's attachment to this load.
   */
  attachHost(): void;
  /** Detaches the connect marker; false when it was not attached. */
  detachHost(): boolean;
  close(): void;
}

export type TcProgramKind = 'parser' | 'marker';

export interface NetInterface {
  readonly name: string;
  readonly ifindex: number;
}

export interface TcMembershipKernel {
  loadParser(pinRoot: string): ParserHandle;
  /** `connectMarker`: load the connect marker's programs too (needed for a host endpoint's entry). */
  loadMarker(pinRoot: string, options: { readonly connectMarker: boolean }): MarkerHandle;
  /** Detaches our program of that kind (fixed priority/handle) from the hook; false when absent. */
  detach(kind: TcProgramKind, ifname: string, direction: TcDirection): boolean;
  /** Whether our program of that kind is on the hook (false also when the interface is gone). */
  isAttached(kind: TcProgramKind, ifname: string, direction: TcDirection): boolean;
  /** Interfaces of this process's network namespace. */
  interfaces(): NetInterface[];
  /** Addresses of this process's network namespace, canonical text (a trusted server among them is a resolver on the node). */
  nodeAddresses(): ReadonlySet<string>;
  removePins(pinRoot: string): void;
  /** Empties the parser's pinned answer marks (whoever loads the pinned maps next marks no answer). Optional. */
  clearAnswerMarks?(pinRoot: string): void;
  /** CLOCK_MONOTONIC ns, the clock of the kernel's expiries (bpf_ktime_get_ns). */
  nowNs(): bigint;
  /**
   * Builds the parser's domain table of `sets` ahead (CPU only, no kernel): the next
   * setDomainSets of these very sets writes it instead of building it then. Optional.
   */
  prepareDomainTable?(sets: DesiredState['domainSets']): void;
}

/**
 * Timing of one mirrored batch, for measurements: the kernel expiries of its entries (their
 * learn time is expiry − lifetime), when the batch reached the mirror and when it was written.
 */
export interface MirrorProbeBatch {
  readonly expiryNs: readonly bigint[];
  readonly deliveredAtNs: bigint;
  readonly writtenAtNs: bigint;
}
export type MirrorProbe = (batch: MirrorProbeBatch) => void;

export interface TcMembershipOptions {
  readonly pinRoot: string;
  readonly markMask: number;
  readonly kernel: TcMembershipKernel;
  readonly clock?: Clock;
  readonly probe?: MirrorProbe;
  readonly logger: NftLogger;
}

/** Interfaces under /sys/class/net (the node namespace's, in the agent's own sysfs mount). */
export function sysfsInterfaces(root = '/sys/class/net'): NetInterface[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .flatMap((name) => {
      try {
        return [{ name, ifindex: Number.parseInt(readFileSync(join(root, name, 'ifindex'), 'utf8'), 10) }];
      } catch {
        return []; // gone while listing
      }
    })
    .filter((i) => Number.isInteger(i.ifindex))
    .sort((a, b) => a.ifindex - b.ifindex);
}

export class TcMembership implements LearnedSource {
  readonly #options: TcMembershipOptions;
  readonly #clock: Clock;
  readonly #subscribers = new Set<(entries: readonly LearnedEntry[]) => unknown>();
  #parser: ParserHandle | undefined;
  #marker: MarkerHandle | undefined;
  /** #marker was loaded with the connect marker. */
  #markerConnects = false;
  /** loadMarker said this build has no marker (warned once). */
  #markerUnsupported = false;
  #stopConsuming: (() => void) | undefined;
  #pending: LearnedEntry[] = [];
  #pendingExpiryNs: bigint[] = [];
  #flushScheduled = false;
  /** A batch is being written by the subscribers (the mirror). */
  #writing = false;
  /** What this process attached: "parser ingress eth0", "marker ingress veth1". */
  readonly #attached = new Set<string>();
  /** ifindex → interface name programmed in the marker's map. */
  #programmed = new Map<number, string>();
  #mirrorOnly = { sets: 0, endpoints: 0 };
  /** The connect marker is attached and programmed for the host endpoint. */
  #hostMarked = false;
  /** Interfaces whose queries' verified answers the parser marks (programmed at the last install). */
  #answerMarked = 0;
  /** Trusted servers on the node at the last install (the parser then reads their answers too: parserHooks). */
  #localResolvers = 0;

  constructor(options: TcMembershipOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * The filters this process attached that are gone from interfaces still there (someone ran
   * `tc qdisc del … clsact`, or `tc filter del`): named "tc <direction> <interface> <program>".
   * An interface that went or came back is the agent's link watch's (it installs again).
   */
  missingFilters(): string[] {
    const { kernel } = this.#options;
    const present = new Set(kernel.interfaces().map((i) => i.name));
    const missing: string[] = [];
    for (const key of this.#attached) {
      const [kind, direction, name] = key.split(' ') as [TcProgramKind, TcDirection, string];
      if (present.has(name) && !kernel.isAttached(kind, name, direction)) missing.push(`tc ${direction} ${name} dnsplane ${kind}`);
    }
    return missing.sort();
  }

  /** A subscriber may return a promise (the mirror's write): the probe times its end. */
  subscribe(onLearned: (entries: readonly LearnedEntry[]) => unknown): () => void {
    this.#subscribers.add(onLearned);
    return () => this.#subscribers.delete(onLearned);
  }

  /**
   * Loads (or reuses, under the pin root) the parser and the marker, programs them for
   * `state`, attaches them, and starts consuming learned events. Returns the membership in
   * force in the kernel (learned while no agent ran) for the mirror to catch up with.
   */
  install(
    state: DesiredState,
    marks: MarkAssignment,
    untracked: UntrackedDns,
    options: { readonly exportMembership?: boolean } = {},
  ): LearnedEntry[] {
    const { kernel, pinRoot, logger } = this.#options;
    this.#parser ??= kernel.loadParser(pinRoot);
    const parser = this.#parser;
    const marker = this.#loadMarker(hasHostEntry(marks));
    parser.configure(state.dns);
    // The parser wakes the mirror only for sets no mark bit enforces (without the marker:
    // every set); the marked sets' nft sets are a copy, read on the reader's slow timer.
    parser.setDomainSets(state.domainSets, marker === undefined ? state.domainSets.map((set) => set.id) : marks.mirrorOnlySets);

    const all = kernel.interfaces();
    const byName = new Map(all.map((i) => [i.name, i]));
    const answerMarks = this.#answerMarksOf(untracked, byName);
    parser.setAnswerMarks(answerMarks, { prune: true });
    this.#answerMarked = answerMarks.size;
    // Where the parser watches DNS (bpf-parser's parserHooks: the watched interfaces' ingress,
    // egress where the node sends DNS, lo's ingress for a resolver on the node).
    const endpointInterfaces = new Set(workloadInterfaces(state));
    const plan = parserHooks({ dns: state.dns, interfaces: all.map((i) => i.name), endpointInterfaces, addresses: kernel.nodeAddresses() });
    if (plan.missing.length > 0) logger.warn({ interfaces: plan.missing }, 'nftables: watched interfaces not present, parser not attached there');
    this.#localResolvers = plan.localResolvers;
    const wantedParser = new Set(plan.hooks.map((hook) => `${hook.direction} ${hook.ifname}`));
    for (const key of wantedParser) {
      const [direction, name] = key.split(' ') as [TcDirection, string];
      parser.attach(name, direction);
      this.#attached.add(`parser ${key}`);
    }
    for (const key of [...this.#attached]) {
      if (!key.startsWith('parser ') || wantedParser.has(key.slice(7))) continue;
      const [, direction, name] = key.split(' ') as [string, TcDirection, string];
      if (byName.has(name)) kernel.detach('parser', name, direction);
      this.#attached.delete(key);
    }

    const programmed = new Map<number, string>();
    const absent: string[] = [];
    let hostEntries: readonly MarkedSet[] | undefined;
    for (const endpoint of marks.endpoints) {
      if (marker === undefined) break;
      if (endpoint.interface === undefined) {
        hostEntries = endpoint.entries;
        continue;
      }
      const netif = byName.get(endpoint.interface);
      if (netif === undefined) {
        absent.push(endpoint.interface);
        continue;
      }
      // Attached first: a program an older agent attached reads the entries until replaced,
      // and one that knew no codes would OR two of them into a third.
      marker.attach(netif.name);
      marker.setEndpointSets(netif.ifindex, marks.markMask, endpoint.entries);
      this.#attached.add(`marker ingress ${netif.name}`);
      programmed.set(netif.ifindex, netif.name);
    }
    const markedNames = new Set(programmed.values());
    for (const [ifindex, name] of this.#programmed) {
      if (programmed.has(ifindex) || marker === undefined) continue;
      marker.removeEndpoint(ifindex);
      // An interface re-created under the same name (new index) was just attached above: keep it.
      if (markedNames.has(name)) continue;
      if (byName.has(name)) kernel.detach('marker', name, 'ingress');
      this.#attached.delete(`marker ingress ${name}`);
    }
    this.#programmed = programmed;
    if (marker !== undefined) this.#hostMarked = this.#programHost(marker, marks.markMask, hostEntries);
    if (absent.length > 0) logger.warn({ interfaces: absent }, 'nftables: endpoint interfaces not present, no membership mark there yet');
    this.#mirrorOnly = { sets: marks.overflow.length, endpoints: marks.mirrorOnlyEndpoints.length };
    if (marks.overflow.length > 0 || marks.mirrorOnlyEndpoints.length > 0) {
      logger.warn(
        { sets: marks.overflow, endpoints: marks.mirrorOnlyEndpoints, markMask: `0x${marks.markMask.toString(16)}` },
        'nftables: these domain sets (beyond the mark-bit budget), and these endpoints for all but their TCP connects (host) or for everything (no interface), rely on the userspace mirror alone',
      );
    }

    this.#stopConsuming ??= parser.consume(
      (entry, expiryNs) => this.#enqueue(entry, expiryNs),
      (error) => logger.error({ err: error }, 'nftables: reading learned events failed'),
    );
    // Reading every map entry costs ~2 s at 100,000 members: callers that already consume the
    // events (a re-install in the same process) skip it.
    return options.exportMembership === false ? [] : parser.exportLearned(this.#clock);
  }

  /**
   * The connect marker for the host endpoint's entries: attached first (so the entry is never
   * read by nothing), then programmed; without a host endpoint, its entry and links go. When the
   * attach fails (no cgroup v2 to attach to) the host endpoint keeps the mirror alone (warned).
   * True when the node's TCP connects are marked.
   */
  #programHost(marker: MarkerHandle, markMask: number, entries: readonly MarkedSet[] | undefined): boolean {
    if (entries === undefined) {
      marker.removeEndpoint(HOST_ENDPOINT_KEY);
      marker.detachHost();
      return false;
    }
    try {
      marker.attachHost();
    } catch (error) {
      marker.removeEndpoint(HOST_ENDPOINT_KEY);
      this.#options.logger.warn({ err: error }, 'nftables: connect marker not attached, the host endpoint relies on the userspace mirror alone');
      return false;
    }
    marker.setEndpointSets(HOST_ENDPOINT_KEY, markMask, entries);
    return true;
  }

  /**
   * The marker, loaded on first use; undefined when this build has none (warned once). The
   * connect marker's programs are loaded only once a host endpoint needs them (their
   * verification stays off a start without one): a marker loaded without them is loaded again
   * with them, and the install that follows attaches the new tc program everywhere.
   */
  #loadMarker(withConnectMarker: boolean): MarkerHandle | undefined {
    if (this.#markerUnsupported) return undefined;
    if (this.#marker !== undefined && (this.#markerConnects || !withConnectMarker)) return this.#marker;
    const { kernel, pinRoot, logger } = this.#options;
    this.#marker?.close();
    this.#marker = undefined;
    try {
      this.#marker = kernel.loadMarker(pinRoot, { connectMarker: withConnectMarker });
      this.#markerConnects = withConnectMarker;
    } catch (error) {
      if (!isNotSupported(error)) throw error;
      this.#markerUnsupported = true;
      logger.warn({ err: error }, 'nftables: no tc membership marker in this build, every domain set relies on the mirror');
    }
    return this.#marker;
  }

  /**
   * Before rules of a new mark assignment replace the old ones: keeps in the marker's map only
   * the entries whose set has the same mark (and mask) in both, so between the two writes no
   * packet carries a mark that one of the two rule sets reads as another set's. A set whose
   * mark changes is matched through its nft set alone until install() programs the new entries
   * right after the rules. Reads the map itself, so an earlier process's entries count too.
   */
  narrowMarks(marks: MarkAssignment): void {
    const marker = this.#loadMarker(hasHostEntry(marks));
    if (marker === undefined) return;
    const byName = new Map(this.#options.kernel.interfaces().map((i) => [i.name, i]));
    const next = new Map<number, readonly MarkedSet[]>();
    for (const endpoint of marks.endpoints) {
      if (endpoint.interface === undefined) {
        next.set(HOST_ENDPOINT_KEY, endpoint.entries);
        continue;
      }
      const netif = byName.get(endpoint.interface);
      if (netif !== undefined) next.set(netif.ifindex, endpoint.entries);
    }
    for (const [ifindex, current] of marker.endpoints()) {
      const wanted = next.get(ifindex) ?? [];
      const kept =
        current.markMask === marks.markMask
          ? current.entries.filter((c) => wanted.some((w) => w.setId === c.setId && entryMark(w) === entryMark(c)))
          : [];
      if (kept.length !== current.entries.length) marker.setEndpointSets(ifindex, current.markMask, kept);
    }
  }

  /**
   * Before an nft apply that may start untracking queries: the parser (when already loaded)
   * marks the verified answers of these interfaces' queries first, so no untracked query's
   * answer finds the rule that admits it without its mark. install() prunes the rest after.
   */
  addAnswerMarks(untracked: UntrackedDns): void {
    if (this.#parser === undefined || untracked.interfaces.length === 0) return;
    const byName = new Map(this.#options.kernel.interfaces().map((i) => [i.name, i]));
    this.#parser.setAnswerMarks(this.#answerMarksOf(untracked, byName), { prune: false });
  }

  #answerMarksOf(untracked: UntrackedDns, byName: ReadonlyMap<string, NetInterface>): Map<number, number> {
    const marks = new Map<number, number>();
    for (const name of untracked.interfaces) {
      const netif = byName.get(name);
      if (netif !== undefined) marks.set(netif.ifindex, untracked.answerMark);
    }
    return marks;
  }

  /** Builds the domain table of `sets` ahead, when the kernel side can (see TcMembershipKernel). */
  prepareDomainTable(sets: DesiredState['domainSets']): void {
    this.#options.kernel.prepareDomainTable?.(sets);
  }

  counters(): Record<string, number> {
    const counters: Record<string, number> = {
      mirror_only_sets: this.#mirrorOnly.sets,
      mirror_only_endpoints: this.#mirrorOnly.endpoints,
      marked_interfaces: this.#programmed.size,
      host_connect_marked: this.#hostMarked ? 1 : 0,
      answer_marked_interfaces: this.#answerMarked,
      local_resolvers: this.#localResolvers,
    };
    return { ...counters, ...parserCounters(this.#parser?.counters() ?? {}) };
  }

  /** Writes entries into the kernel membership maps (when loaded), so the mark path has them too. */
  importLearned(entries: readonly LearnedEntry[]): number | undefined {
    return this.#parser?.importLearned(entries, this.#clock);
  }

  /** Membership in force in the kernel maps (when loaded). */
  exportLearned(): LearnedEntry[] | undefined {
    return this.#parser?.exportLearned(this.#clock);
  }

  /**
   * One batch per event-loop turn: every entry that arrived during this turn — and, while the
   * previous batch is still being written, everything that arrives until it is done (one
   * transaction instead of a queue of small ones when answers come in bursts).
   */
  #enqueue(entry: LearnedEntry, expiryNs: bigint): void {
    this.#pending.push(entry);
    this.#pendingExpiryNs.push(expiryNs);
    if (this.#flushScheduled || this.#writing) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    const expiryNs = this.#pendingExpiryNs;
    this.#pending = [];
    this.#pendingExpiryNs = [];
    const probe = this.#options.probe;
    const deliveredAtNs = probe === undefined ? 0n : this.#options.kernel.nowNs();
    this.#writing = true;
    const writes = [...this.#subscribers].map((subscriber) => subscriber(batch));
    void Promise.allSettled(writes).then(() => {
      this.#writing = false;
      probe?.({ expiryNs, deliveredAtNs, writtenAtNs: this.#options.kernel.nowNs() });
      if (this.#pending.length > 0 && !this.#flushScheduled) this.#flush();
    });
  }

  /** Stops consuming; attachments, pins and maps stay in force. */
  close(): void {
    this.#stopConsuming?.();
    this.#stopConsuming = undefined;
    this.#marker?.close();
    this.#marker = undefined;
    this.#markerConnects = false;
    this.#parser?.close();
    this.#parser = undefined;
  }

  /**
   * Detaches every tc program of ours (the parser's and the marker's fixed priority/handle on
   * every interface, also those a previous process attached) and removes the pin root.
   */
  remove(): void {
    const { kernel, pinRoot } = this.#options;
    for (const { name } of kernel.interfaces()) {
      kernel.detach('parser', name, 'ingress');
      kernel.detach('parser', name, 'egress');
      kernel.detach('marker', name, 'ingress');
    }
    this.#marker?.detachHost();
    this.#hostMarked = false;
    this.#attached.clear();
    this.#programmed.clear();
    // A migration keeps the shared parser maps for the next dataplane: it must not mark answers.
    kernel.clearAnswerMarks?.(pinRoot);
    this.#answerMarked = 0;
    this.close();
    kernel.removePins(pinRoot);
  }
}

/** The assignment has an entry for the host endpoint (the connect marker's). */
function hasHostEntry(marks: MarkAssignment): boolean {
  return marks.endpoints.some((endpoint) => endpoint.interface === undefined);
}
