// The full-eBPF dataplane: tc programs on the endpoints' interfaces enforce the policy from
// maps; the DNS parser runs on the same hooks and writes the membership maps the policy reads.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  parserCounters,
  systemClock,
  type Clock,
  type Dataplane,
  type DataplaneStatus,
  type DesiredState,
  type LearnedEntry,
} from '@dnsplane/core';
import {
  BpfObjectSpec,
  DEFAULT_PIN_ROOT,
  DnsParserProgram,
  RingBufferConsumer,
  attachTc,
  detachTc,
  makePinFolder,
  nodeAddresses,
  parserHooks,
  type ParserHook,
  queryTc,
  unpin,
  type BpfMap,
  type BpfObject,
  type BpfProgram,
} from '@dnsplane/bpf-parser';
import {
  FRAGMENT_COUNTER_NAMES,
  POLICY_MAP_NAMES,
  POLICY_PROGRAM_NAMES,
  decodeLogEvent,
} from './encode.js';
import { splitCounters, writeGeneration } from './generation.js';
import { listInterfaces, type InterfaceIndex } from './interfaces.js';
import { renderPolicyTables } from './render.js';
import { HOST_INTERFACES, compilePolicyTables, type HookTable, type PolicyTables, type TcDirection } from './tables.js';

/** The compiled policy object (built by `make -C bpf`). */
export const POLICY_OBJECT_PATH = fileURLToPath(new URL('../bpf/policy.bpf.o', import.meta.url));

/**
 * tc filter slots (fixed, so a re-attach replaces): this dataplane's parser, then its policy,
 * after bpf-parser's shared slots (DNSPLANE_TC_FILTERS: parser 0xd1, membership mark 0xd2).
 * The parser gets a slot of its own rather than the shared 0xd1: during a migration the old
 * dataplane's remove() detaches its filters after the new one is installed, and must not take
 * the new dataplane's parser with it. Both parsers run for that moment (same maps, same writes).
 */
export const PARSER_TC_FILTER = { priority: 0xd4, handle: 0xd15 } as const;
export const POLICY_TC_FILTER = { priority: 0xd5, handle: 0xd15 } as const;
const TC_FILTER_OF = { parser: PARSER_TC_FILTER, policy: POLICY_TC_FILTER } as const;

/** How status() and missingObjects() name one of our tc filters. */
function tcObjectName(program: 'parser' | 'policy', direction: TcDirection, ifname: string): string {
  return `tc ${direction} ${ifname} ${program === 'parser' ? 'dnsplane_parse_tc' : POLICY_PROGRAM_NAMES[direction]}`;
}

export interface EbpfLogger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

const silentLogger: EbpfLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

export interface EbpfDataplaneOptions {
  /** bpffs folder of every pin (parser maps, policy maps, programs); default /sys/fs/bpf/dnsplane. */
  readonly pinRoot?: string;
  readonly logger?: EbpfLogger;
  readonly clock?: Clock;
  readonly objectPath?: string;
  /** The namespace's interfaces; default: read /sys/class/net. */
  readonly interfaces?: () => InterfaceIndex;
  /** The namespace's own addresses, canonical text (a trusted server among them is a resolver on the node); default: the OS's list. */
  readonly nodeAddresses?: () => ReadonlySet<string>;
}

interface Loaded {
  readonly parser: DnsParserProgram;
  readonly policy: BpfObject;
}

/** One tc attachment this driver wants. */
interface Attachment {
  readonly ifname: string;
  readonly direction: TcDirection;
  readonly program: 'parser' | 'policy';
}

export class EbpfDataplane implements Dataplane {
  readonly kind = 'ebpf' as const;
  readonly pinRoot: string;
  readonly #options: EbpfDataplaneOptions;
  readonly #logger: EbpfLogger;
  readonly #clock: Clock;
  #loaded: Loaded | undefined;
  #logConsumer: RingBufferConsumer | undefined;
  #installed: { state: DesiredState; tables: PolicyTables; attachments: readonly Attachment[] } | undefined;
  /** keepLearnedEvents: another dataplane's mirror still reads the learned events. */
  #keepEvents = false;
  /** Trusted servers on the node at the last install (the parser then reads their answers too: parserHooks). */
  #localResolvers = 0;

  constructor(options: EbpfDataplaneOptions = {}) {
    this.#options = options;
    this.pinRoot = options.pinRoot ?? DEFAULT_PIN_ROOT;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? systemClock;
  }

  render(state: DesiredState): string {
    return renderPolicyTables(state, compilePolicyTables(state));
  }

  async install(state: DesiredState): Promise<void> {
    const tables = compilePolicyTables(state); // NotSupportedError before any kernel write
    const interfaces = (this.#options.interfaces ?? listInterfaces)();
    const hooks = this.#resolveHooks(tables, interfaces);
    const loaded = this.#load();
    loaded.parser.configure(state.dns);
    // Enforcement reads the membership maps; nobody reads learned events here (unless another
    // dataplane still in force does: keepLearnedEvents).
    loaded.parser.setDomainSets(state.domainSets, { events: this.#keepEvents });
    writeGeneration(loaded.policy, tables, hooks);
    this.#pinPrograms(loaded);
    const parserPlan = parserHooks({
      dns: state.dns,
      interfaces: [...interfaces.keys()],
      endpointInterfaces: new Set(tables.workloadInterfaces),
      addresses: (this.#options.nodeAddresses ?? nodeAddresses)(),
    });
    if (parserPlan.missing.length > 0) this.#logger.warn({ interfaces: parserPlan.missing }, 'ebpf: watched interfaces not present, parser not attached there');
    this.#localResolvers = parserPlan.localResolvers;
    const attachments = this.#wantedAttachments(hooks, parserPlan.hooks);
    this.#attach(loaded, attachments, interfaces);
    this.#installed = { state, tables, attachments };
    this.#startLogConsumer(loaded.policy.map(POLICY_MAP_NAMES.log));
    this.#logger.info(
      { hooks: hooks.length, rules: tables.rules.length, netLists: tables.netLists.length, domainSets: state.domainSets.length, pinRoot: this.pinRoot },
      'ebpf dataplane installed',
    );
  }

  async keepLearnedEvents(keep: boolean): Promise<void> {
    this.#keepEvents = keep;
    // Installed: the table in force says it now. Not yet: install writes it with the table.
    if (this.#installed) this.#loaded?.parser.setLearnedEvents(keep);
  }

  async exportLearned(): Promise<LearnedEntry[]> {
    return this.#load().parser.exportLearned(this.#clock);
  }

  async importLearned(entries: readonly LearnedEntry[]): Promise<void> {
    this.#load().parser.importLearned(entries, this.#clock);
  }

  async status(): Promise<DataplaneStatus> {
    const loaded = this.#load();
    const counters: Record<string, number> = {};
    Object.assign(counters, parserCounters(loaded.parser.counters()));
    const policyCounters = splitCounters(loaded.policy.map(POLICY_MAP_NAMES.counters));
    for (const [name, value] of Object.entries(policyCounters)) counters[`policy.${name}`] = value;
    const fragmentCounters = splitCounters(loaded.policy.map(POLICY_MAP_NAMES.fragCounters), FRAGMENT_COUNTER_NAMES);
    for (const [name, value] of Object.entries(fragmentCounters)) counters[`fragments.${name}`] = value;
    counters['local_resolvers'] = this.#localResolvers;
    const interfaces = (this.#options.interfaces ?? listInterfaces)();
    const objects = [`bpf pins ${this.pinRoot}`];
    for (const [ifname] of interfaces) {
      for (const direction of ['ingress', 'egress'] as const) {
        for (const program of ['policy', 'parser'] as const) {
          if (safeQuery(ifname, direction, TC_FILTER_OF[program]) !== undefined) objects.push(tcObjectName(program, direction, ifname));
        }
      }
    }
    return { kind: 'ebpf', objects, counters, learned: loaded.parser.learnedCount() };
  }

  /**
   * The tc filters the last install attached that are gone (a `tc qdisc del … clsact`) from
   * interfaces that are still there: an interface that went or came back is the link watch's
   * (it installs again). One query per filter.
   */
  async missingObjects(): Promise<string[]> {
    const installed = this.#installed;
    if (installed === undefined) return [];
    const interfaces = (this.#options.interfaces ?? listInterfaces)();
    return installed.attachments
      .filter((a) => interfaces.has(a.ifname))
      .filter((a) => safeQuery(a.ifname, a.direction, TC_FILTER_OF[a.program]) === undefined)
      .map((a) => tcObjectName(a.program, a.direction, a.ifname));
  }

  async remove(): Promise<void> {
    this.#stopLogConsumer();
    const interfaces = (this.#options.interfaces ?? listInterfaces)();
    for (const [ifname] of interfaces) {
      for (const direction of ['ingress', 'egress'] as const) {
        for (const filter of [POLICY_TC_FILTER, PARSER_TC_FILTER]) {
          if (safeQuery(ifname, direction, filter) !== undefined) detachTc({ ifname, direction, ...filter });
        }
      }
    }
    this.#loaded?.policy.close();
    this.#loaded?.parser.close();
    this.#loaded = undefined;
    this.#installed = undefined;
    DnsParserProgram.removePins(this.pinRoot);
    this.#logger.info({ pinRoot: this.pinRoot }, 'ebpf dataplane removed');
  }

  async close(): Promise<void> {
    this.#stopLogConsumer();
    this.#loaded?.policy.close();
    this.#loaded?.parser.close();
    this.#loaded = undefined;
  }

  /** The loaded objects, loading (and pinning / reusing pins) on first use. */
  #load(): Loaded {
    if (this.#loaded) return this.#loaded;
    const parser = DnsParserProgram.load({ pinRoot: this.pinRoot });
    try {
      const spec = BpfObjectSpec.open(this.#options.objectPath ?? POLICY_OBJECT_PATH);
      try {
        spec.reuseMaps(this.pinRoot);
      } catch (error) {
        spec.close();
        throw error;
      }
      const policy = spec.load();
      policy.prefaultMaps(); // as the parser's: no first touches on the packet path
      this.#loaded = { parser, policy };
      return this.#loaded;
    } catch (error) {
      parser.close();
      throw error;
    }
  }

  #resolveHooks(tables: PolicyTables, interfaces: InterfaceIndex): Array<{ hook: HookTable; ifname: string; ifindex: number }> {
    const workload = new Set(tables.workloadInterfaces);
    const out: Array<{ hook: HookTable; ifname: string; ifindex: number }> = [];
    for (const hook of tables.hooks) {
      if (hook.interface === HOST_INTERFACES) {
        for (const [ifname, ifindex] of interfaces) {
          if (ifname !== 'lo' && !workload.has(ifname)) out.push({ hook, ifname, ifindex });
        }
        continue;
      }
      const ifindex = interfaces.get(hook.interface);
      if (ifindex === undefined) {
        this.#logger.warn({ endpoint: hook.endpoint, interface: hook.interface }, 'endpoint interface does not exist: not enforced until the next install after it appears');
        continue;
      }
      out.push({ hook, ifname: hook.interface, ifindex });
    }
    return out;
  }

  #pinPrograms(loaded: Loaded): void {
    makePinFolder(this.pinRoot);
    const pins: Array<[BpfProgram, string]> = [
      [loaded.policy.program(POLICY_PROGRAM_NAMES.ingress), join(this.pinRoot, POLICY_PROGRAM_NAMES.ingress)],
      [loaded.policy.program(POLICY_PROGRAM_NAMES.egress), join(this.pinRoot, POLICY_PROGRAM_NAMES.egress)],
      [loaded.parser.tcClassifier, join(this.pinRoot, loaded.parser.tcClassifier.name)],
    ];
    for (const [program, path] of pins) {
      if (existsSync(path)) unpin(path);
      program.pin(path);
    }
  }

  /**
   * The policy program on each hook; the parser where bpf-parser's parserHooks puts it (the
   * watched interfaces' ingress, egress where the node sends DNS, lo's ingress for a resolver
   * on the node; at the endpoints' egress it parses only what the node sends).
   */
  #wantedAttachments(hooks: ReadonlyArray<{ hook: HookTable; ifname: string }>, parser: readonly ParserHook[]): Attachment[] {
    const wanted = new Map<string, Attachment>();
    const add = (a: Attachment): void => void wanted.set(`${a.program}/${a.direction}/${a.ifname}`, a);
    for (const { hook, ifname } of hooks) add({ ifname, direction: hook.tcDirection, program: 'policy' });
    for (const { ifname, direction } of parser) add({ ifname, direction, program: 'parser' });
    return [...wanted.values()];
  }

  #attach(loaded: Loaded, wanted: readonly Attachment[], interfaces: InterfaceIndex): void {
    const programs = {
      parser: loaded.parser.tcClassifier,
      ingress: loaded.policy.program(POLICY_PROGRAM_NAMES.ingress),
      egress: loaded.policy.program(POLICY_PROGRAM_NAMES.egress),
    };
    const keep = new Set<string>();
    for (const a of wanted) {
      const program = a.program === 'parser' ? programs.parser : programs[a.direction];
      attachTc({ ifname: a.ifname, direction: a.direction, program, ...TC_FILTER_OF[a.program], replace: true });
      keep.add(`${a.program}/${a.direction}/${a.ifname}`);
    }
    // Filters of ours that the new state no longer wants.
    for (const [ifname] of interfaces) {
      for (const direction of ['ingress', 'egress'] as const) {
        for (const program of ['policy', 'parser'] as const) {
          if (keep.has(`${program}/${direction}/${ifname}`)) continue;
          const filter = TC_FILTER_OF[program];
          if (safeQuery(ifname, direction, filter) !== undefined) detachTc({ ifname, direction, ...filter });
        }
      }
    }
  }

  #startLogConsumer(map: BpfMap): void {
    if (this.#logConsumer) return;
    this.#logConsumer = new RingBufferConsumer(
      map,
      (record) => {
        const event = decodeLogEvent(record);
        const installed = this.#installed;
        this.#logger.info(
          {
            event: 'policy_log',
            policy: installed?.state.policies[event.policyIndex]?.name ?? event.policyIndex,
            endpoint: installed?.state.endpoints[event.endpointIndex]?.name ?? event.endpointIndex,
            direction: event.direction,
            rule: event.rule,
            family: event.family,
            protocol: event.protocol,
            source: event.source,
            sourcePort: event.sourcePort,
            destination: event.destination,
            destinationPort: event.destinationPort,
          },
          'policy log',
        );
      },
      { onError: (error) => this.#logger.error({ err: error }, 'policy log event') },
    );
    this.#logConsumer.unref();
  }

  #stopLogConsumer(): void {
    this.#logConsumer?.close();
    this.#logConsumer = undefined;
  }
}

function safeQuery(ifname: string, direction: TcDirection, filter: { priority: number; handle: number }): number | undefined {
  try {
    return queryTc({ ifname, direction, ...filter });
  } catch {
    return undefined; // no clsact qdisc, or the interface went away
  }
}

export function createEbpfDataplane(options: EbpfDataplaneOptions = {}): EbpfDataplane {
  return new EbpfDataplane(options);
}
