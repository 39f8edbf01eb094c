// The loaded DNS parser: its object (bpf/dnsplane.bpf.o) with maps pinned under a pin root,
// the two entry points, and typed access to its state — DNS settings and trusted servers,
// the domain table, membership, counters.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Clock, DnsSettings, DomainSet, IpFamily, LearnedEntry } from '@dnsplane/core';
import { NotFoundError, NotSupportedError, canonicalAddress, isNotFound, systemClock } from '@dnsplane/core';
import { readCounters, resetCounters, type ParserCounterValues } from './counters.js';
import { buildDomainTable, encodeDomainTable, type DomainTable, type EncodedDomainTable } from './domain-table.js';
import { monotonicToWallMs, wallMsToMonotonic } from './events.js';
import {
  BpfMap,
  MapType,
  BpfObjectSpec,
  type BpfObject,
  BpfProgram,
  DEFAULT_PIN_ROOT,
  ktimeNs,
  makePinFolder,
  possibleCpus,
  unpinIncompatibleMap,
  type TcAttachment,
  type TcDirection,
} from './libbpf.js';
import { attachDnsplaneTc, detachDnsplaneTc, queryDnsplaneTc } from './tc-attachment.js';
import {
  ASSEMBLY_MAP_NAME,
  MAP_NAMES,
  PATTERN_SLOTS_PER_GENERATION,
  PROGRAM_NAMES,
  MAX_SERVERS,
  arrayIndex,
  decodeExpiry,
  decodeTableInfo,
  decodeMemberKey,
  domainKeyGeneration,
  encodeConfig,
  encodeExpiry,
  encodeMemberKey,
  encodeTableInfo,
  QUERY_SETS,
  STRUCT_LAYOUTS,
  type ParserMapRole,
  type TableGeneration,
} from './maps.js';

/** The compiled parser object (built by `make -C bpf`). */
export const PARSER_OBJECT_PATH = fileURLToPath(new URL('../bpf/dnsplane.bpf.o', import.meta.url));

/** The parser's entry points: the tc classifier and the socket filter (xt_bpf). */
export type ParserEntry = 'tc' | 'socket';
const ENTRY_PROGRAMS: Readonly<Record<ParserEntry, string>> = {
  tc: PROGRAM_NAMES.tcClassifier,
  socket: PROGRAM_NAMES.socketFilter,
};

export interface ParserProgramOptions {
  /** Folder under bpffs where the maps are pinned (and reused from); default /sys/fs/bpf/dnsplane. */
  readonly pinRoot?: string;
  /** Default: PARSER_OBJECT_PATH. */
  readonly objectPath?: string;
  /**
   * Entry points to load (default both). Each one costs its own verification — about half of
   * the load — so a dataplane loads only the one it attaches; the others throw NotFoundError.
   */
  readonly entries?: readonly ParserEntry[];
  /**
   * Pin the loaded entry points under the pin root, named by a hash of the object file
   * (`<program name>_<16 hex>`; bpffs refuses dots in names), and on the next load of the same object reuse them instead
   * of loading again: no verification at all on a restart. They are reused only when every
   * parser map they use is the one pinned there now; another object version loads afresh
   * (and replaces the older version's program pins). Default false.
   */
  readonly reusePrograms?: boolean;
  /** loadAsync only: the nice value its worker thread loads at (BpfObjectSpec.loadAsync). */
  readonly loadNice?: number;
  /**
   * Read every page of the new load's array maps before it is used (BpfMap.prefault).
   * Default true; false only for the benchmark that measures what it saves
   * (`bench/parser-cold-ab.ts --prefault-ab`).
   */
  readonly prefault?: boolean;
}

/** What a loaded parser is made of: from a fresh load (a BpfObject) or from pins. */
interface ParserParts {
  program(name: string): BpfProgram;
  map(name: string): BpfMap;
  close(): void;
}

/** Name of an entry point's pin for an object with content hash `hash`: `<program>_<hash>`. */
export function parserProgramPinName(entry: ParserEntry, hash: string): string {
  return `${ENTRY_PROGRAMS[entry]}_${hash}`;
}
const PROGRAM_PIN = /^dnsplane_parse_(tc|socket)_[0-9a-f]{16}$/;

/** First 16 hex digits of the object file's SHA-256: what identifies a program version in its pin name. */
export function parserObjectHash(objectPath: string = PARSER_OBJECT_PATH): string {
  return createHash('sha256').update(readFileSync(objectPath)).digest('hex').slice(0, 16);
}

/** Where the socket-filter entry point is pinned for xt_bpf: <pinRoot>/prog_parse_socket. */
export const PARSER_SOCKET_PIN = 'prog_parse_socket';

/** The value of a dnsp_wake_sets entry (any value: the key's presence is what counts). */
const WAKE_SET_VALUE = Buffer.from([1]);
/** importLearned: how much later an expiry must be than the one held to be written (5 ms). */
const SAME_EXPIRY_NS = 5_000_000n;

/** A membership entry as the maps hold it. */
export interface MembershipEntry {
  readonly setId: number;
  readonly family: IpFamily;
  readonly address: string;
  /** CLOCK_MONOTONIC ns. */
  readonly expiryNs: bigint;
}

export class DnsParserProgram {
  readonly #object: ParserParts;

  private constructor(
    object: ParserParts,
    readonly pinRoot: string,
    /** True when the entry points came from pins of an earlier load (nothing was verified). */
    readonly reused: boolean,
  ) {
    this.#object = object;
  }

  /**
   * Loads the parser; its maps are pinned at <pinRoot>/<map name>, and maps already pinned
   * there are reused (learned state and configuration survive a restart and are shared by
   * every loaded copy). KernelError with the verifier log when the kernel refuses it.
   * With `reusePrograms`, entry points pinned by an earlier load of the same object are
   * taken as they are (see ParserProgramOptions).
   */
  static load(options: ParserProgramOptions = {}): DnsParserProgram {
    const plan = DnsParserProgram.#plan(options);
    if (plan.reused !== undefined) return plan.reused;
    let object: BpfObject;
    try {
      object = plan.spec.load();
    } catch (error) {
      plan.failed();
      throw error;
    }
    return plan.finish(object);
  }

  /**
   * load() with the kernel's verification on a libuv worker thread, so the caller's event
   * loop (e.g. reading the resources) goes on meanwhile. Reusing pins is immediate.
   */
  static async loadAsync(options: ParserProgramOptions = {}): Promise<DnsParserProgram> {
    const plan = DnsParserProgram.#plan(options);
    if (plan.reused !== undefined) return plan.reused;
    let object: BpfObject;
    try {
      object = await plan.spec.loadAsync(options.loadNice === undefined ? {} : { nice: options.loadNice });
    } catch (error) {
      plan.failed();
      throw error;
    }
    return plan.finish(object);
  }

  /** What load() and loadAsync() share: pins to reuse, or an opened spec and what follows its load. */
  static #plan(
    options: ParserProgramOptions,
  ): { reused: DnsParserProgram; spec?: undefined; failed?: undefined; finish?: undefined } | {
    reused?: undefined;
    spec: BpfObjectSpec;
    failed: () => void;
    finish: (object: BpfObject) => DnsParserProgram;
  } {
    const pinRoot = options.pinRoot ?? DEFAULT_PIN_ROOT;
    const objectPath = options.objectPath ?? PARSER_OBJECT_PATH;
    const entries: readonly ParserEntry[] = options.entries ?? ['socket', 'tc'];
    if (entries.length === 0) throw new RangeError('DnsParserProgram.load: entries must name at least one entry point');
    const hash = options.reusePrograms === true ? parserObjectHash(objectPath) : undefined;
    if (hash !== undefined) {
      const pinned = openPinned(pinRoot, entries, hash);
      if (pinned !== undefined) return { reused: new DnsParserProgram(pinned, pinRoot, true) };
    }
    const existed = existsSync(pinRoot);
    dropIncompatiblePins(pinRoot);
    const spec = BpfObjectSpec.open(objectPath);
    try {
      spec.reuseMaps(pinRoot, { maps: Object.values(MAP_NAMES) });
      spec.loadOnly(entries.map((entry) => ENTRY_PROGRAMS[entry]));
    } catch (error) {
      spec.close();
      throw error;
    }
    // Nothing half-made: a pin folder this failed load created goes again.
    const failed = (): void => {
      if (!existed) rmSync(pinRoot, { recursive: true, force: true });
    };
    const finish = (object: BpfObject): DnsParserProgram => {
      try {
        // Maps made by this load have pages no packet touched yet (BpfMap.prefault): the first
        // queries would pay for them on the packet path. A few milliseconds here.
        if (options.prefault !== false) object.prefaultMaps();
        if (hash !== undefined) pinForReuse(object, pinRoot, entries, hash);
      } catch (error) {
        object.close();
        failed();
        throw error;
      }
      return new DnsParserProgram(object, pinRoot, false);
    };
    return { spec, failed, finish };
  }

  /**
   * Empties the pinned dnsp_answer_marks under `pinRoot` without loading the parser (the
   * nftables driver's remove(): a dataplane that takes over the pinned maps must not go on
   * marking answers). False when there is no such pin.
   */
  static clearAnswerMarks(pinRoot: string): boolean {
    const path = join(pinRoot, MAP_NAMES.answerMarks);
    if (!existsSync(path)) return false;
    const map = BpfMap.fromPinned(path);
    try {
      for (const key of map.keys()) map.delete(key);
    } finally {
      map.close();
    }
    return true;
  }

  /** Removes every pin under `pinRoot` (the folder included). Maps live on while loaded. */
  static removePins(pinRoot: string): void {
    rmSync(pinRoot, { recursive: true, force: true });
  }

  /** Socket filter for xt_bpf (data starts at the IP header); returns skb->len, i.e. matches. */
  get socketFilter(): BpfProgram {
    return this.#object.program(PROGRAM_NAMES.socketFilter);
  }

  /** tc classifier (data starts at the Ethernet header); returns TC_ACT_UNSPEC. */
  get tcClassifier(): BpfProgram {
    return this.#object.program(PROGRAM_NAMES.tcClassifier);
  }

  map(role: ParserMapRole): BpfMap {
    return this.#object.map(MAP_NAMES[role]);
  }

  /** Pins both programs at <dir>/<program name> (default: the pin root); returns the paths. */
  pinPrograms(dir: string = this.pinRoot): { socketFilter: string; tcClassifier: string } {
    const socketFilter = join(dir, PROGRAM_NAMES.socketFilter);
    const tcClassifier = join(dir, PROGRAM_NAMES.tcClassifier);
    this.socketFilter.pin(socketFilter);
    this.tcClassifier.pin(tcClassifier);
    return { socketFilter, tcClassifier };
  }

  /**
   * Pins the socket-filter entry point at <pinRoot>/prog_parse_socket for
   * `iptables -m bpf --object-pinned`, replacing an earlier load's pin there (rules already
   * inserted keep the program they were given; both share the maps). Returns the path.
   */
  pinSocketFilter(): string {
    const path = join(this.pinRoot, PARSER_SOCKET_PIN);
    try {
      unlinkSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    this.socketFilter.pin(path);
    return path;
  }

  /**
   * Attaches the tc entry point on `ifname` (this process's network namespace) at the
   * parser's fixed tc slot (DNSPLANE_TC_FILTERS.parser), replacing what is there — a
   * re-attach after a restart swaps the program in place.
   */
  attachTc(ifname: string, direction: TcDirection): TcAttachment {
    return attachDnsplaneTc('parser', ifname, direction, this.tcClassifier);
  }

  /** Detaches the parser from `ifname`; false when it was not attached. */
  detachTc(ifname: string, direction: TcDirection): boolean {
    return detachDnsplaneTc('parser', ifname, direction);
  }

  /** Kernel id of the program at the parser's tc slot on `ifname`, or undefined. */
  attachedTc(ifname: string, direction: TcDirection): number | undefined {
    return queryDnsplaneTc('parser', ifname, direction);
  }

  /**
   * Writes the DNS settings and the trusted servers, in one map update. NotSupportedError
   * with more than MAX_SERVERS trusted servers.
   */
  configure(dns: DnsSettings): void {
    if (dns.trustedServers.length > MAX_SERVERS) {
      throw new NotSupportedError(`the kernel parser holds at most ${MAX_SERVERS} trusted DNS servers, the config lists ${dns.trustedServers.length}`);
    }
    this.map('config').update(arrayIndex(0), encodeConfig(dns));
  }

  /**
   * Replaces the domain table with the one of `sets`, atomically for the kernel: the new
   * table is written into the generation that is not live (its own dnsp_domains keys and
   * half of dnsp_patterns), then one 8-byte update of dnsp_table switches to it — a lookup
   * sees the old table or the new one, never a mix. What is left of the generation before
   * the live one is removed first (no lookup has used it since the previous switch).
   * Throws NotSupportedError before touching the maps when the sets exceed what the kernel
   * table holds. `beforeSwitch` (tests) runs after the writes, before the switch. `table`:
   * buildDomainTable(sets), built ahead by the caller (~0.1-0.3 s at 10,000 patterns).
   *
   * `wakeSets`: ids of the sets whose learned events wake the ring buffer's reader at once
   * (dnsp_wake_sets, in force with the new table); every other event is written without a
   * wakeup and waits for the reader's slow timer. Default none — the right thing for a
   * caller that reads no events, and what a caller that leaves it out gets even when an
   * earlier caller (another dataplane on the same pins) listed some.
   *
   * `events`: write learned events to the ring buffer (default true). False for a caller
   * that reads none (the iptables and ebpf dataplanes): the membership maps are written as
   * ever, no record is. In force with the new table, like the wake sets, so a dataplane that
   * takes over the same pins turns them on or off with its first table.
   */
  setDomainSets(
    sets: readonly DomainSet[],
    options: {
      beforeSwitch?: () => void;
      table?: DomainTable;
      /** Encodings of `table` made ahead (encodeDomainTable); the one of the generation written is used, if there. */
      encoded?: readonly EncodedDomainTable[];
      wakeSets?: Iterable<number>;
      events?: boolean;
    } = {},
  ): DomainTable {
    const table = options.table ?? buildDomainTable(sets);
    const info = this.map('table');
    const next = this.nextTableGeneration();
    const encoded =
      (options.table === undefined ? undefined : options.encoded?.find((e) => e.generation === next)) ?? encodeDomainTable(table, next);

    // In batches (a handful of syscalls for 10,000s of entries, not one each).
    const domains = this.map('domains');
    // Keys only, and not even those from an empty map (a first load: reading a 65,536-entry
    // hash map's batch buffers alone cost ~60 ms of page faults).
    let stale: Buffer[] = [];
    if (!domains.isEmpty()) {
      const wanted = new Set(encoded.domains.map(([key]) => key.toString('hex')));
      stale = domains.batchKeys().filter((key) => domainKeyGeneration(key) === next && !wanted.has(key.toString('hex')));
    }
    domains.deleteBatch(stale);
    const patterns = this.map('patterns');
    patterns.updateBatch(
      encoded.patterns.map(([slot]) => arrayIndex(slot)),
      encoded.patterns.map(([, value]) => value),
    );
    // the generation's slots past the new patterns: cleared (a dump shows only what is in use)
    const empty = Buffer.alloc(STRUCT_LAYOUTS.dnsplane_pattern.size);
    const end = (next + 1) * PATTERN_SLOTS_PER_GENERATION;
    const clear: Buffer[] = [];
    for (let slot = next * PATTERN_SLOTS_PER_GENERATION + encoded.patterns.length; slot < end; slot++) {
      const value = patterns.lookup(arrayIndex(slot));
      if (value === undefined || value.every((byte) => byte === 0)) break;
      clear.push(arrayIndex(slot));
    }
    patterns.updateBatch(clear, clear.map(() => empty));
    domains.updateBatch(
      encoded.domains.map(([key]) => key),
      encoded.domains.map(([, value]) => value),
    );
    // The wake sets before the switch that turns their lookup on; the ones no longer listed
    // after it (until then a response crediting one still wakes the reader: harmless).
    const wake = new Set(options.wakeSets ?? []);
    const wakeMap = this.map('wakeSets');
    const wakeKeys = [...wake].map((id) => arrayIndex(id));
    wakeMap.updateBatch(wakeKeys, wakeKeys.map(() => WAKE_SET_VALUE));
    options.beforeSwitch?.();
    info.update(
      arrayIndex(0),
      encodeTableInfo({
        minSuffixLabels: table.minSuffixLabels,
        maxSuffixLabels: table.maxSuffixLabels,
        entries: table.entries.size,
        generation: next,
        wakeSets: wake.size > 0,
        events: options.events ?? true,
      }),
    );
    wakeMap.deleteBatch(wakeMap.keys().filter((key) => !wake.has(key.readUInt32LE(0))));
    return table;
  }

  /**
   * Turns the learned events of the table in force on or off (`setDomainSets`' `events`)
   * without writing the table again: one 8-byte update of dnsp_table with its flag changed
   * (generation, bounds and wake sets as they are). The next setDomainSets says it anew.
   */
  setLearnedEvents(on: boolean): void {
    const info = this.map('table');
    const current = info.lookup(arrayIndex(0));
    if (current === undefined) return; // an array map always has its entry
    info.update(arrayIndex(0), encodeTableInfo({ ...decodeTableInfo(current), events: on }));
  }

  /** Whether the table in force writes learned events (true before any table: the parser's default). */
  learnedEvents(): boolean {
    return tableWritesEvents(this.map('table'));
  }

  /** learnedEvents() of the dnsp_table pinned under `pinRoot`, without loading the parser. */
  static learnedEventsPinned(pinRoot: string): boolean {
    const table = BpfMap.fromPinned(join(pinRoot, MAP_NAMES.table));
    try {
      return tableWritesEvents(table);
    } finally {
      table.close();
    }
  }

  /** The generation of the domain table the next setDomainSets writes (the one not in force). */
  nextTableGeneration(): TableGeneration {
    const current = this.map('table').lookup(arrayIndex(0));
    const live: TableGeneration = current === undefined ? 0 : (decodeTableInfo(current).generation ?? 0);
    return live === 0 ? 1 : 0;
  }

  /** The sets whose learned events wake the reader (setDomainSets' `wakeSets`), by id; [] when none is in force. */
  wakeSets(): number[] {
    const current = this.map('table').lookup(arrayIndex(0));
    if (current === undefined || decodeTableInfo(current).wakeSets !== true) return [];
    return this.map('wakeSets')
      .keys()
      .map((key) => key.readUInt32LE(0))
      .sort((a, b) => a - b);
  }

  /** The live generation's dnsp_domains keys (the other generation's wait for the next replacement). */
  liveDomainKeys(): Buffer[] {
    const current = this.map('table').lookup(arrayIndex(0));
    const live = current === undefined ? 0 : (decodeTableInfo(current).generation ?? 0);
    return this.map('domains')
      .keys()
      .filter((key) => domainKeyGeneration(key) === live);
  }

  counters(): ParserCounterValues {
    return readCounters(this.map('counters'));
  }

  resetCounters(): void {
    resetCounters(this.map('counters'), possibleCpus());
  }


  /** Membership entries in force at `nowNs` (default: now), sorted by set, family, address. */
  membership(nowNs: bigint = ktimeNs()): MembershipEntry[] {
    return this.#members(nowNs).sort(
      (a, b) => a.setId - b.setId || a.family - b.family || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0),
    );
  }

  /**
   * How many membership entries are in force at `nowNs`: what membership().length says, without
   * decoding or sorting an entry (a status asks for it; 100,000 sorted entries cost a second).
   */
  learnedCount(nowNs: bigint = ktimeNs()): number {
    let count = 0;
    this.#forEachMember(nowNs, () => {
      count++;
    });
    return count;
  }

  /** Membership entries in force at `nowNs`, in map order (sorting 100,000 of them costs a second). */
  #members(nowNs: bigint): MembershipEntry[] {
    const out: MembershipEntry[] = [];
    this.#forEachMember(nowNs, (family, keys, keyAt, expiryNs) => out.push({ ...decodeMemberKey(family, keys, keyAt), expiryNs }));
    return out;
  }

  /** Each membership entry in force at `nowNs`, read from the batch without a copy per entry. */
  #forEachMember(nowNs: bigint, visit: (family: IpFamily, keys: Buffer, keyAt: number, expiryNs: bigint) => void): void {
    for (const family of [4, 6] as const) {
      this.map(family === 4 ? 'members4' : 'members6').forEachEntry((keys, keyAt, values, valueAt) => {
        const expiryNs = decodeExpiry(values, valueAt);
        if (expiryNs > nowNs) visit(family, keys, keyAt, expiryNs);
      });
    }
  }

  /**
   * Membership in force, with wall-clock expiries (in no particular order). One object per entry:
   * the daemon exports 100,000 of them every 30 s to save its state.
   */
  exportLearned(clock: Clock = systemClock): LearnedEntry[] {
    const nowNs = ktimeNs();
    const nowMs = clock.now();
    const out: LearnedEntry[] = [];
    this.#forEachMember(nowNs, (family, keys, keyAt, expiryNs) => {
      const { setId, address } = decodeMemberKey(family, keys, keyAt);
      out.push({ setId, family, address, expiresAt: Math.round(monotonicToWallMs(expiryNs, nowNs, nowMs)) });
    });
    return out;
  }

  /**
   * Writes learned entries (expired ones skipped); an existing entry keeps the later expiry. An
   * expiry less than SAME_EXPIRY_NS after the one held is that one read back: an export gives
   * wall-clock ms from one reading of each clock, an import converts back with another, and a
   * restart imports the union of its state file and its export — so without the slack a restart
   * rewrote about every entry, a few ms later each time.
   */
  importLearned(entries: readonly LearnedEntry[], clock: Clock = systemClock): number {
    const nowNs = ktimeNs();
    const nowMs = clock.now();
    let written = 0;
    for (const family of [4, 6] as const) {
      const map = this.map(family === 4 ? 'members4' : 'members6');
      // set id → canonical address → the entry with the latest expiry asked for. Keys are
      // encoded only for the entries written: a restart imports 100,000 the map mostly holds.
      const wanted = new Map<number, Map<string, LearnedEntry>>();
      let count = 0;
      for (const entry of entries) {
        if (entry.family !== family || entry.expiresAt <= nowMs) continue;
        const address = canonicalAddress(entry.address) ?? entry.address;
        let addresses = wanted.get(entry.setId);
        if (addresses === undefined) wanted.set(entry.setId, (addresses = new Map()));
        const seen = addresses.get(address);
        if (seen === undefined) count++;
        if (seen === undefined || seen.expiresAt < entry.expiresAt) addresses.set(address, entry);
      }
      if (count === 0) continue;
      // What the map holds: one batched read for many entries, a lookup each for a few.
      const held = new Map<number, Map<string, bigint>>();
      const hold = (setId: number, address: string, expiryNs: bigint): void => {
        let addresses = held.get(setId);
        if (addresses === undefined) held.set(setId, (addresses = new Map()));
        addresses.set(address, expiryNs);
      };
      if (count > 256) {
        map.forEachEntry((keys, keyAt, values, valueAt) => {
          const { setId, address } = decodeMemberKey(family, keys, keyAt);
          hold(setId, address, decodeExpiry(values, valueAt));
        });
      } else {
        for (const [setId, addresses] of wanted) {
          for (const address of addresses.keys()) {
            const value = map.lookup(encodeMemberKey({ setId, family, address }));
            if (value !== undefined) hold(setId, address, decodeExpiry(value));
          }
        }
      }
      const keys: Buffer[] = [];
      const values: Buffer[] = [];
      for (const [setId, addresses] of wanted) {
        const heldOfSet = held.get(setId);
        for (const [address, entry] of addresses) {
          const expiryNs = wallMsToMonotonic(entry.expiresAt, nowNs, nowMs);
          const current = heldOfSet?.get(address);
          if (current !== undefined && current + SAME_EXPIRY_NS >= expiryNs) continue;
          keys.push(encodeMemberKey({ setId, family, address }));
          values.push(encodeExpiry(expiryNs));
        }
      }
      map.updateBatch(keys, values);
      written += keys.length;
    }
    return written;
  }

  /** Deletes every membership entry (both families). */
  clearMembership(): void {
    for (const role of ['members4', 'members6'] as const) {
      const map = this.map(role);
      for (const key of map.keys()) map.delete(key);
    }
  }

  /** dnsp_answer_marks: ifindex → the mark bits verified UDP answers to its queries get. */
  answerMarks(): Map<number, number> {
    const map = this.map('answerMarks');
    const marks = new Map<number, number>();
    for (const [key, value] of map.entries()) marks.set(key.readUInt32LE(0), value.readUInt32LE(0));
    return marks;
  }

  /**
   * Writes the answer-mark bits of these interfaces (ifindex → bits, non-zero); with `prune`,
   * removes every interface not among them. The UDP queries the parser records from such an
   * interface from now on carry the bits; a verified answer to one gets them in skb->mark.
   */
  setAnswerMarks(marks: ReadonlyMap<number, number>, options: { readonly prune?: boolean } = {}): void {
    const map = this.map('answerMarks');
    for (const [ifindex, bits] of marks) {
      if (!Number.isInteger(ifindex) || ifindex <= 0 || ifindex > 0xffffffff) throw new RangeError(`setAnswerMarks: bad ifindex ${ifindex}`);
      if (!Number.isInteger(bits) || bits <= 0 || bits > 0xffffffff) throw new RangeError(`setAnswerMarks: bits of ${ifindex} must be a non-zero 32-bit value`);
      map.update(arrayIndex(ifindex), arrayIndex(bits >>> 0));
    }
    if (options.prune !== true) return;
    for (const key of map.keys()) if (!marks.has(key.readUInt32LE(0))) map.delete(key);
  }

  /** Forgets the remembered queries of these dnsp_queries sets (querySetOf): written empty. */
  clearQuerySets(sets: Iterable<number>): void {
    const keys = [...new Set(sets)].map((set) => arrayIndex(set));
    const empty = Buffer.alloc(STRUCT_LAYOUTS.dnsplane_query_set.size);
    this.map('queries').updateBatch(
      keys,
      keys.map(() => empty),
    );
  }

  /**
   * Forgets the TCP messages and fragmented datagrams held for their missing pieces
   * (dnsp_assembly, not pinned: a new load starts without them); returns how many.
   */
  clearAssemblies(): number {
    const map = this.#object.map(ASSEMBLY_MAP_NAME);
    const keys = map.keys();
    for (const key of keys) map.delete(key);
    return keys.length;
  }

  /** Forgets every remembered query: every set written empty (one batch, nothing read). */
  clearQueries(): void {
    this.clearQuerySets(Array.from({ length: QUERY_SETS }, (_, set) => set));
  }

  close(): void {
    this.#object.close();
  }
}

/**
 * The parser as pinned by an earlier load of the object with content hash `hash`: its entry
 * points and the maps pinned under `pinRoot` — undefined (nothing kept open) when a pin is
 * missing or a program uses a parser map other than the one pinned now (the maps were
 * re-created since: the program must be loaded again to use them).
 */
function openPinned(pinRoot: string, entries: readonly ParserEntry[], hash: string): ParserParts | undefined {
  const paths = entries.map((entry) => join(pinRoot, parserProgramPinName(entry, hash)));
  if (!paths.every((path) => existsSync(path))) return undefined;
  const programs = new Map<string, BpfProgram>();
  const maps = new Map<string, BpfMap>();
  const close = (): void => {
    for (const program of programs.values()) program.close();
    for (const map of maps.values()) map.close();
  };
  try {
    for (const name of Object.values(MAP_NAMES)) maps.set(name, BpfMap.fromPinned(join(pinRoot, name)));
    const mapIds = new Map([...maps].map(([name, map]) => [name, map.id]));
    entries.forEach((entry, i) => {
      const program = BpfProgram.fromPinned(paths[i]!);
      programs.set(ENTRY_PROGRAMS[entry], program);
    });
    for (const program of programs.values()) {
      // Kernel map names are the first 15 characters of the object's names (ours are shorter).
      const stale = program.usedMaps().some((used) => mapIds.has(used.name) && mapIds.get(used.name) !== used.id);
      if (stale) {
        close();
        return undefined;
      }
    }
  } catch (error) {
    close();
    if (isNotFound(error)) return undefined; // a pin went away meanwhile
    throw error;
  }
  let closed = false;
  return {
    program(name) {
      const found = programs.get(name);
      if (found === undefined) throw new NotFoundError(`parser program ${name} was not loaded (entries: ${entries.join(', ')})`);
      return found;
    },
    map(name) {
      const found = maps.get(name);
      if (found === undefined) throw new NotFoundError(`the parser has no map named ${name}`);
      return found;
    },
    close() {
      if (closed) return;
      closed = true;
      close();
    },
  };
}

/** Whether the dnsp_table `table` tells the parser to write learned events. */
function tableWritesEvents(table: BpfMap): boolean {
  const current = table.lookup(arrayIndex(0));
  return current === undefined || decodeTableInfo(current).events !== false;
}

/** BPF_F_NO_PREALLOC: a hash map whose elements are allocated as they are added. */
const MAP_NO_PREALLOC = 1;

/**
 * Pins of an older layout that libbpf would refuse to reuse, failing the load; each is dropped
 * and its map created afresh:
 * - dnsp_queries (an LRU hash before the set-associative array; its value was 8 bytes before
 *   answer marks): it holds at most DNSPLANE_QUERY_LIFETIME_NS (10 s) of queries in flight;
 * - dnsp_domains (preallocated before 2026-12-03: no BPF_F_NO_PREALLOC): the domain table is
 *   written again by the next setDomainSets, before any dataplane attaches the new program, and a
 *   program still attached keeps the map it holds. dnsp_table stays; the first table written
 *   goes into the generation it does not name live, and switches to it.
 */
function dropIncompatiblePins(pinRoot: string): void {
  unpinIncompatibleMap(join(pinRoot, MAP_NAMES.queries), { type: MapType.array, valueSize: STRUCT_LAYOUTS.dnsplane_query_set.size });
  unpinIncompatibleMap(join(pinRoot, MAP_NAMES.domains), {
    type: MapType.hash,
    valueSize: STRUCT_LAYOUTS.dnsplane_domain_entry.size,
    flags: MAP_NO_PREALLOC,
  });
}

/** Pins the freshly loaded entry points for reuse and removes other object versions' program pins. */
function pinForReuse(object: ParserParts, pinRoot: string, entries: readonly ParserEntry[], hash: string): void {
  makePinFolder(pinRoot);
  const current = new Set(entries.map((entry) => parserProgramPinName(entry, hash)));
  for (const entry of entries) {
    const path = join(pinRoot, parserProgramPinName(entry, hash));
    removePin(path);
    object.program(ENTRY_PROGRAMS[entry]).pin(path);
  }
  // Pins of other object versions (this version's other entry point stays for its users).
  for (const name of readdirSync(pinRoot)) {
    if (PROGRAM_PIN.test(name) && !current.has(name) && !name.endsWith(`_${hash}`)) removePin(join(pinRoot, name));
  }
}

function removePin(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
