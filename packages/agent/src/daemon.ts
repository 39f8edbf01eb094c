// The daemon (`dnsplane run`): load, compile, install into the configured dataplane, restore
// learned state, then watch the config and resource files and re-apply on change.
// - A change that does not validate is rejected as a whole: its problems are logged and the
//   last good state stays in force.
// - Learned state is persisted to statePath periodically and on stop (atomic write).
// - stop() ends background work but never removes enforcement: rules, programs and maps stay.
// - Start reconciles with the kernel: the desired state is installed first (install keeps learned
//   members), then the union of what the kernel holds, what the state file holds and — when the
//   recorded dataplane differs — what the previous dataplane holds is imported. Only then is the
//   previous dataplane removed (make before break). `migrate()` does the same on a running daemon.
import { statSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import type { Logger } from 'pino';
import {
  formatTrustedServer,
  isInvalidInput,
  LearnedStore,
  type Dataplane,
  type DataplaneKind,
  type DesiredState,
  type DnsplaneConfig,
  type LearnedEntry,
  type LoadedInputs,
  type StatusDetail,
} from '@dnsplane/core';
import { trustedServersOnNode } from '@dnsplane/bpf-parser';
import type { DataplaneProvider } from './container.js';
import { changedBuildFields } from './drivers.js';
import { loadAndCompile, stateCounts } from './desired.js';
import type { AgentEnvironment } from './environment.js';
import { linkChanges, sameLinks, type LinkSnapshot } from './link-watch.js';
import {
  DEFAULT_STATE_MAX_ENTRIES,
  readDataplaneMarker,
  type DataplaneMarker,
  readStateFile,
  serializeLearned,
  writeDataplaneMarker,
  writeFileAtomic,
} from './state-file.js';
import { noSharedPins, type PinSnapshot } from './shared-pins.js';
import { DEFAULT_WATCH_RETRY_MS, KeptWatch, WatchRetry } from './watch-retry.js';
import { renderMetrics } from './metrics-text.js';
import type { MetricsServer } from './metrics-endpoint.js';
import { StatusServer, type AgentRequest, type AgentStatus, type LearnedEntryReport, type StateFileReport } from './status-socket.js';

/** What started a drift check: its timer, the removal watch (an event, or its restart: it may have missed one), or a caller. */
export type DriftTrigger = 'periodic' | 'kernel_event' | 'watch_restarted' | 'requested';

export interface DaemonOptions {
  readonly configPath: string;
  /** Unix socket for `dnsplane status`; absent = no status API. */
  readonly socketPath?: string;
  /** Use this dataplane instead of the config's `dataplane:`. */
  readonly dataplaneOverride?: DataplaneKind;
  readonly environment: AgentEnvironment;
  readonly logger: Logger;
  readonly dataplaneProvider: DataplaneProvider;
  /** Cap on entries written to statePath (default DEFAULT_STATE_MAX_ENTRIES). */
  readonly stateMaxEntries?: number;
  /** The config's log.level sets the logger's level, at start and on every accepted change (false: --log-level was given). */
  readonly logLevelFromConfig?: boolean;
}

/** A dataplane switch, as reported in status and logs. */
export interface MigrationReport {
  readonly from: DataplaneKind;
  readonly to: DataplaneKind;
  readonly at: string;
  readonly imported: number;
  /** Set when the old dataplane could not be removed completely (`dnsplane uninstall` cleans up). */
  readonly removeFailed?: string;
}

export type ReconcileOutcome = 'applied' | 'unchanged' | 'rejected' | 'failed';

interface AppliedState {
  readonly inputs: LoadedInputs;
  readonly state: DesiredState;
  readonly text: string;
  readonly at: number;
}

export class Daemon {
  #dataplane: Dataplane | undefined;
  #kind: DataplaneKind | undefined;
  #applied: AppliedState | undefined;
  #rejected: string[] = [];
  #watcher: { close(): void } | undefined;
  /** What #watcher watches (paths and the ignored state file). */
  #watched: string | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #linkWatch: KeptWatch | undefined;
  /** The interfaces as read just before the last successful install (absent: not watched). */
  #linksInstalled: LinkSnapshot | undefined;
  /** The trusted servers on the node (localServersKey) as read just before the last successful install. */
  #localServersInstalled: string | undefined;
  #persistTimer: NodeJS.Timeout | undefined;
  #driftTimer: NodeJS.Timeout | undefined;
  /** The interval #driftTimer runs at (undefined: not armed yet). */
  #driftTimerSeconds: number | undefined;
  /** What the drift check found gone and installed again (status: `repairs`). */
  #repairs: { count: number; lastAt: string; lastMissing: string[]; lastFailed: boolean } | undefined;
  /** The removal watch of the dataplane in force, and its kind. */
  #removalWatch: { readonly kind: DataplaneKind; readonly watch: KeptWatch } | undefined;
  /** A drift check the removal watch asked for is queued and has not started: later lines add none. */
  #removalCheckQueued = false;
  #statusServer: StatusServer | undefined;
  /** The metrics endpoint: the `metrics.listen` it serves (or failed to), and its server while it serves. */
  #metrics: { readonly listen: string; state: 'starting' | 'serving' | 'failed'; server?: MetricsServer } | undefined;
  /** Starts and stops of the metrics endpoint, one after another. */
  #metricsChange: Promise<void> = Promise.resolve();
  #queue: Promise<unknown> = Promise.resolve();
  #startedAt = 0;
  #stopped = false;
  /** The dataplane asked for over the config's `dataplane:` (--dataplane, or the last migrate). */
  #override: DataplaneKind | undefined;
  /** Every learned entry seen (state file, exports), names kept: what persist() writes. */
  #known: LearnedStore;
  #stateFile: StateFileReport | undefined;
  #migrations: MigrationReport[] = [];
  /** Milliseconds per start phase, and when the restore ended (status `startup`). */
  #startup: { phasesMs: Record<string, number>; restoredAt?: string } = { phasesMs: {} };
  /** Outcomes of every reconcile, in order (for status and tests). */
  readonly outcomes: ReconcileOutcome[] = [];

  constructor(private readonly options: DaemonOptions) {
    this.#override = options.dataplaneOverride;
    this.#known = new LearnedStore(options.environment.clock);
  }

  /** The kind of the dataplane in force. */
  get kind(): DataplaneKind | undefined {
    return this.#kind;
  }

  /** Dataplane switches done by this daemon, in order. */
  get migrations(): readonly MigrationReport[] {
    return this.#migrations;
  }

  get dataplane(): Dataplane | undefined {
    return this.#dataplane;
  }

  /** The state last installed. */
  get applied(): DesiredState | undefined {
    return this.#applied?.state;
  }

  /** Problems of the last rejected change; empty after a successful apply. */
  get rejected(): readonly string[] {
    return this.#rejected;
  }

  /** Loads and installs; throws (InvalidInputError, NotSupportedError, KernelError) when it cannot. */
  async start(): Promise<void> {
    const { environment, logger } = this.options;
    this.#startedAt = environment.clock.now();
    // The status socket first: it doubles as the "one daemon at a time" guard, before any install.
    if (this.options.socketPath !== undefined) {
      const server = new StatusServer(this.options.socketPath, (request) => this.#answer(request));
      await server.listen();
      this.#statusServer = server;
      logger.info({ event: 'status_listening', socket: this.options.socketPath }, 'status API listening');
    }
    let mark = environment.clock.now();
    const phase = (name: string): void => {
      const now = environment.clock.now();
      this.#startup.phasesMs[name] = now - mark;
      mark = now;
    };
    // The dataplane is built from the config alone and starts loading its kernel programs
    // (the verifier: seconds) while the resources are read.
    const early = await this.#prepareEarly();
    phase('prepare'); // the config read alone, the dataplane built, the parser's load started
    // Pins as they were before anything of this start (the early preparation included) made new ones.
    const pinsAtStart = early?.pinsBefore;
    let compiled: Awaited<ReturnType<typeof loadAndCompile>>;
    try {
      compiled = await loadAndCompile(environment.loadInputs, this.options.configPath);
    } catch (error) {
      await early?.dataplane.close().catch(() => undefined); // it installed nothing; what prepare made goes
      throw error;
    }
    const { inputs, state } = compiled;
    phase('inputs');
    const kind = this.#override ?? inputs.config.dataplane;
    const statePath = statePathOf(inputs);
    const recorded = await this.#previousDataplane(statePath);
    const previous = recorded?.dataplane;
    let dataplane: Dataplane;
    if (early !== undefined && early.kind === kind && early.config === JSON.stringify(inputs.config)) {
      dataplane = early.dataplane;
    } else {
      // The config changed between the two reads (or could not be read alone): built again.
      await early?.dataplane.close().catch(() => undefined);
      dataplane = this.options.dataplaneProvider(kind, inputs);
    }
    this.#dataplane = dataplane;
    this.#kind = kind;
    // Another kind, or iptables with another explicit backend (legacy ↔ nft: other tools,
    // other rules). `auto` is not compared: it may resolve to either.
    const backend = inputs.config.iptables.backend;
    const otherBackend =
      previous === 'iptables' &&
      kind === 'iptables' &&
      recorded?.iptablesBackend !== undefined &&
      recorded.iptablesBackend !== 'auto' &&
      backend !== 'auto' &&
      recorded.iptablesBackend !== backend;
    const migrating = previous !== undefined && (previous !== kind || otherBackend);
    const pinsBefore = migrating
      ? pinsAtStart !== undefined && early?.pinRoot === inputs.config.bpf.pinRoot
        ? pinsAtStart
        : this.#pins.snapshot(inputs.config.bpf.pinRoot)
      : undefined;
    // 1. Desired state first. Drivers keep learned members of sets that still exist, so nothing
    //    already learned is denied at any point.
    const links = environment.links?.read();
    const localServers = localServersKey(state, environment.nodeAddresses);
    await dataplane.install(state);
    phase('install');
    this.#linksInstalled = links;
    this.#localServersInstalled = localServers;
    this.#remember(inputs, state);
    logger.info({ event: 'applied', dataplane: kind, ...summary(state), phasesMs: { ...this.#startup.phasesMs } }, 'desired state installed');
    // Read after the install: parsing 100,000 saved entries (~1 s) need not delay enforcement.
    const saved = await this.#readSavedLearned(statePath);
    phase('state_file');
    // 2. The previous dataplane, when the recorded one differs: still in force until step 4.
    let old: Dataplane | undefined;
    if (migrating) {
      try {
        old = this.options.dataplaneProvider(previous, recorded === undefined ? inputs : ranWith(inputs, recorded));
      } catch (error) {
        logger.warn({ event: 'migration_source_unavailable', from: previous, err: error }, `cannot build the previous dataplane ${previous}; its objects stay until \`dnsplane uninstall\``);
      }
    }
    // 3. Import the union of the state file, the kernel (new dataplane) and the old dataplane.
    const fromKernel = await this.#exportFrom(dataplane, kind);
    const fromOld = old && previous ? await this.#exportFrom(old, previous) : undefined;
    phase('export');
    const imported = await this.#importUnion(dataplane, state, [
      { source: 'state_file', entries: saved },
      { source: kind, entries: fromKernel },
      ...(old && previous && fromOld ? [{ source: previous, entries: fromOld }] : []),
    ]);
    phase('import');
    this.#startup.restoredAt = new Date(environment.clock.now()).toISOString();
    // 4. Break: remove the previous dataplane, then record the new one.
    if (old && previous) {
      const report = await this.#removeOld(old, previous, kind, imported, inputs.config.bpf.pinRoot, pinsBefore);
      logger.info({ event: 'migrated', ...report }, `migrated from ${previous} to ${kind}`);
    }
    // nftables again, under another `nftables.table`: the last run's table still enforces the
    // old rules (its sets no longer filled). Only it goes: the tc programs and pins are shared.
    const oldTable = recorded?.nftablesTable;
    if (kind === 'nftables' && previous === 'nftables' && oldTable !== undefined && oldTable !== inputs.config.nftables.table) {
      await this.#retireTable(oldTable);
    }
    // The same dataplane under another `bpf.pinRoot`: its programs replaced the last run's on
    // the same tc slots and rules; the old folder's pins (maps of tens of MiB) go. A migration
    // removed them with the old dataplane, which was built with that folder.
    const oldPinRoot = recorded?.pinRoot;
    if (!migrating && oldPinRoot !== undefined && oldPinRoot !== inputs.config.bpf.pinRoot) this.#retirePinRoot(oldPinRoot);
    await this.#recordDataplane(statePath, kind, inputs);
    this.#watch(inputs);
    this.#watchLinks();
    this.#watchRemovals();
    this.#persistTimer = setInterval(() => {
      this.persist().catch((error: unknown) => logger.error({ event: 'persist_failed', err: error }, 'could not save learned state'));
    }, environment.persistIntervalMs);
    this.#applyRunSettings(inputs.config);
    // Not unref'd: while the daemon runs, this timer alone keeps the process alive.
  }

  /** The dataplane of the config file alone, preparing (undefined when it cannot be built yet: the full load reports why). */
  async #prepareEarly(): Promise<{ kind: DataplaneKind; dataplane: Dataplane; config: string; pinRoot: string; pinsBefore: PinSnapshot } | undefined> {
    const loadConfig = this.options.environment.loadConfig;
    if (loadConfig === undefined) return undefined;
    try {
      const { configFile, config } = await loadConfig(this.options.configPath);
      const kind = this.#override ?? config.dataplane;
      const dataplane = this.options.dataplaneProvider(kind, { configFile, config, policies: [], endpoints: [], files: [] });
      // A migration keeps the pins the new dataplane makes: those made from here on.
      const pinsBefore = this.#pins.snapshot(config.bpf.pinRoot);
      dataplane.prepare?.();
      return { kind, dataplane, config: JSON.stringify(config), pinRoot: config.bpf.pinRoot, pinsBefore };
    } catch (error) {
      this.options.logger.debug({ event: 'prepare_skipped', err: error }, 'dataplane not prepared ahead of the resources');
      return undefined;
    }
  }

  /**
   * Switches the running daemon to `to`, make before break: the new dataplane gets the desired
   * state, the learned entries (old dataplane's export ∪ everything known) and its parser before
   * the old one is removed. Serialised with reconciles. Resolves to the migration report
   * (undefined when `to` is already in force).
   */
  migrate(to: DataplaneKind): Promise<MigrationReport | undefined> {
    return this.#serialised(() => this.#migrateNow(to));
  }

  async #migrateNow(to: DataplaneKind): Promise<MigrationReport | undefined> {
    const { logger } = this.options;
    const old = this.#dataplane;
    const from = this.#kind;
    const applied = this.#applied;
    if (!old || !from || !applied || this.#stopped) throw new Error('the daemon is not running a dataplane');
    if (to === from) return undefined;
    const next = this.options.dataplaneProvider(to, applied.inputs);
    logger.info({ event: 'migration_started', from, to }, `migrating from ${from} to ${to}`);
    const pinRoot = applied.inputs.config.bpf.pinRoot;
    const pinsBefore = this.#pins.snapshot(pinRoot);
    const links = this.options.environment.links?.read();
    const localServers = localServersKey(applied.state, this.options.environment.nodeAddresses);
    // The nftables mirror reads the parser's learned events until the old dataplane is removed;
    // a new one that reads none would turn them off with its table, and mirror-only nft sets
    // (the node's UDP, sets past the mark bits) would miss what is learned in between.
    const keepEvents = from === 'nftables';
    try {
      if (keepEvents) await next.keepLearnedEvents?.(true);
      await next.install(applied.state);
    } catch (error) {
      logger.error({ event: 'migration_failed', from, to, err: error }, `could not install ${to}; ${from} stays in force`);
      await next.remove().catch(() => undefined);
      await next.close().catch(() => undefined);
      throw error;
    }
    const imported = await this.#importUnion(next, applied.state, [
      { source: from, entries: await this.#exportFrom(old, from) },
      { source: to, entries: await this.#exportFrom(next, to) },
    ]);
    this.#dataplane = next;
    this.#kind = to;
    this.#override = to;
    this.#linksInstalled = links;
    this.#localServersInstalled = localServers;
    const report = await this.#removeOld(old, from, to, imported, pinRoot, pinsBefore);
    if (keepEvents) {
      await next.keepLearnedEvents?.(false).catch((error: unknown) =>
        logger.warn({ event: 'learned_events_off_failed', to, err: error }, 'could not turn the learned events off; they stay on (the ring fills, nothing else changes)'),
      );
    }
    await this.#recordDataplane(statePathOf(applied.inputs), to, applied.inputs);
    this.#watchRemovals();
    logger.info({ event: 'migrated', ...report }, `migrated from ${from} to ${to}`);
    await this.persist().catch((error: unknown) => logger.error({ event: 'persist_failed', err: error }, 'could not save learned state'));
    return report;
  }

  get #pins(): NonNullable<AgentEnvironment['sharedPins']> {
    return this.options.environment.sharedPins ?? noSharedPins;
  }

  async #removeOld(
    old: Dataplane,
    from: DataplaneKind,
    to: DataplaneKind,
    imported: number,
    pinRoot: string,
    pinsBefore: PinSnapshot | undefined,
  ): Promise<MigrationReport> {
    let removeFailed: string | undefined;
    // The old dataplane's remove() deletes the shared pin folder: hold what the new one uses.
    let held: { restore(): string[] } | undefined;
    try {
      held = this.#pins.hold(pinRoot, pinsBefore ?? { paths: new Set() });
    } catch (error) {
      this.options.logger.warn({ event: 'pins_hold_failed', pinRoot, err: error }, 'could not hold the shared pins');
    }
    try {
      await old.remove();
    } catch (error) {
      removeFailed = error instanceof Error ? error.message : String(error);
      this.options.logger.error({ event: 'migration_remove_failed', from, to, err: error }, `could not remove every object of ${from}; \`dnsplane uninstall\` cleans up`);
    }
    try {
      const repinned = held?.restore() ?? [];
      if (repinned.length > 0) this.options.logger.info({ event: 'pins_kept', pinRoot, repinned }, 'shared pins kept across the old dataplane\'s removal');
    } catch (error) {
      this.options.logger.error({ event: 'pins_restore_failed', pinRoot, err: error }, 'could not re-pin the shared maps');
    }
    await old.close().catch(() => undefined);
    const report: MigrationReport = {
      from,
      to,
      at: new Date(this.options.environment.clock.now()).toISOString(),
      imported,
      ...(removeFailed === undefined ? {} : { removeFailed }),
    };
    this.#migrations.push(report);
    return report;
  }

  async #recordDataplane(statePath: string, kind: DataplaneKind, inputs: LoadedInputs): Promise<void> {
    try {
      const { config } = inputs;
      await writeDataplaneMarker(statePath, kind, this.options.environment.clock, config.iptables.backend, config.nftables.table, config.bpf.pinRoot);
    } catch (error) {
      this.options.logger.error({ event: 'marker_write_failed', path: statePath, err: error }, 'could not record the active dataplane');
    }
  }

  /** Deletes the nft table an earlier run owned under another name (logged; a failure is not fatal). */
  async #retireTable(table: string): Promise<void> {
    const { environment, logger } = this.options;
    if (environment.retireNftablesTable === undefined) return;
    try {
      await environment.retireNftablesTable(table, logger);
      logger.info({ event: 'old_table_removed', table }, `the table inet ${table} of the last run is gone (nftables.table changed)`);
    } catch (error) {
      logger.warn({ event: 'old_table_remove_failed', table, err: error }, `could not delete the table inet ${table} of the last run: \`nft delete table inet ${table}\``);
    }
  }

  /** Removes the bpffs folder an earlier run pinned in under another name (logged; a failure is not fatal). */
  #retirePinRoot(pinRoot: string): void {
    const { environment, logger } = this.options;
    if (environment.retirePinRoot === undefined) return;
    try {
      environment.retirePinRoot(pinRoot);
      logger.info({ event: 'old_pins_removed', pinRoot }, `the pins of the last run under ${pinRoot} are gone (bpf.pinRoot changed)`);
    } catch (error) {
      logger.warn({ event: 'old_pins_remove_failed', pinRoot, err: error }, `could not remove ${pinRoot} of the last run: \`rm -r ${pinRoot}\``);
    }
  }

  /** The dataplane recorded by the last run (undefined: none recorded, or the marker was bad). */
  async #previousDataplane(statePath: string): Promise<DataplaneMarker | undefined> {
    const read = await readDataplaneMarker(statePath, this.options.environment.clock);
    if (read.kind === 'ok') return read.marker;
    if (read.kind === 'corrupt') {
      this.options.logger.warn({ event: 'state_file_corrupt', problem: read.problem, setAside: read.setAside }, 'the dataplane marker is not readable; set aside');
    }
    return undefined;
  }

  async #readSavedLearned(path: string): Promise<LearnedEntry[]> {
    const { logger, environment } = this.options;
    const read = await readStateFile(path, environment.clock);
    switch (read.kind) {
      case 'missing':
        this.#stateFile = { path };
        return [];
      case 'ok':
        this.#stateFile = { path, loaded: read.entries.length };
        return read.entries;
      case 'corrupt':
        this.#stateFile = { path, problem: read.problem, ...(read.setAside === undefined ? {} : { setAside: read.setAside }) };
        logger.warn(
          { event: 'state_file_corrupt', path, problem: read.problem, setAside: read.setAside },
          'the learned-state file is not readable as dnsplane state; set aside, starting without it',
        );
        return [];
    }
  }

  async #exportFrom(dataplane: Dataplane, kind: DataplaneKind): Promise<LearnedEntry[]> {
    try {
      return await dataplane.exportLearned();
    } catch (error) {
      this.options.logger.warn({ event: 'export_failed', dataplane: kind, err: error }, `could not export learned entries from ${kind}`);
      return [];
    }
  }

  /** Imports the live union of `sources` (sets that exist in `state` only); returns how many. */
  async #importUnion(
    dataplane: Dataplane,
    state: DesiredState,
    sources: ReadonlyArray<{ source: string; entries: readonly LearnedEntry[] }>,
  ): Promise<number> {
    const { logger } = this.options;
    const union = new LearnedStore(this.options.environment.clock);
    let offered = 0;
    for (const { entries } of sources) {
      offered += entries.length;
      union.recordAll(entries);
      this.#known.recordAll(entries);
    }
    union.retainSets(new Set(state.domainSets.map((s) => s.id)));
    const entries = union.entries().map((e) => this.#withName(e));
    await dataplane.importLearned(entries);
    logger.info(
      {
        event: 'learned_restored',
        entries: entries.length,
        skipped: offered - entries.length,
        sources: Object.fromEntries(sources.map((s) => [s.source, s.entries.length])),
      },
      'learned state restored',
    );
    return entries.length;
  }

  #withName(entry: LearnedEntry): LearnedEntry {
    if (entry.name !== undefined) return entry;
    const name = this.#known.get(entry.setId, entry.address)?.name;
    return name === undefined ? entry : { ...entry, name };
  }

  /**
   * Installs the applied state again when kernel objects of it are gone (`missingObjects`):
   * someone flushed the ruleset or reloaded a firewall, and enforcement would stay open until
   * the next change. Learned entries the daemon knows are imported again after (a recreated nft
   * table starts with empty sets; the kernel maps usually still hold them). Queued with the
   * reconciles. Every `driftCheckSeconds`.
   */
  checkDrift(): Promise<'intact' | 'repaired' | 'failed'> {
    return this.#serialised(() => this.#checkDriftOnce('requested'));
  }

  async #checkDriftOnce(trigger: DriftTrigger): Promise<'intact' | 'repaired' | 'failed'> {
    const { logger } = this.options;
    const dataplane = this.#dataplane;
    const applied = this.#applied;
    if (!dataplane || !applied || this.#stopped) return 'intact';
    const missing = await dataplane.missingObjects();
    if (missing.length === 0) return 'intact';
    logger.warn(
      { event: 'drift', dataplane: this.#kind, trigger, missing: missing.slice(0, 20), count: missing.length },
      'kernel objects of the installed state are gone, or what they depend on changed; installing it again',
    );
    const record = (failed: boolean): void => {
      this.#repairs = {
        count: (this.#repairs?.count ?? 0) + (failed ? 0 : 1),
        lastAt: new Date(this.options.environment.clock.now()).toISOString(),
        lastMissing: missing.slice(0, 20),
        lastFailed: failed,
      };
    };
    try {
      await dataplane.install(applied.state);
      await dataplane.importLearned(this.#known.entries()); // live entries only
    } catch (error) {
      record(true);
      logger.error({ event: 'drift_repair_failed', err: error }, 'installing again failed; the next check retries');
      return 'failed';
    }
    record(false);
    logger.info({ event: 'repaired', dataplane: this.#kind, count: missing.length }, 'the installed state is in force again');
    return 'repaired';
  }

  /** Runs `work` after everything queued before it (reconciles, migrations, drift checks), one at a time. */
  #serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** checkDrift() for the timer and the removal watch (`starting`: when it leaves the queue): a failure is logged, not thrown. */
  #checkDriftLogged(trigger: DriftTrigger, starting?: () => void): void {
    this.#serialised(() => {
      starting?.();
      return this.#checkDriftOnce(trigger);
    }).catch((error: unknown) => this.options.logger.error({ event: 'drift_check_failed', err: error }, 'could not check the kernel objects'));
  }

  /** Re-reads and re-applies now (changes are serialised: one reconcile at a time). */
  reconcile(): Promise<ReconcileOutcome> {
    return this.#serialised(() => this.#reconcileOnce());
  }

  async #reconcileOnce(): Promise<ReconcileOutcome> {
    const outcome = await this.#reconcileInner();
    this.outcomes.push(outcome);
    return outcome;
  }

  async #reconcileInner(): Promise<ReconcileOutcome> {
    const { environment, logger } = this.options;
    const dataplane = this.#dataplane;
    if (!dataplane || this.#stopped) return 'unchanged';
    let compiled: { inputs: LoadedInputs; state: DesiredState };
    try {
      compiled = await loadAndCompile(environment.loadInputs, this.options.configPath);
    } catch (error) {
      if (!isInvalidInput(error)) throw error;
      this.#rejected = error.message.split('\n');
      logger.warn(
        { event: 'change_rejected', problems: this.#rejected },
        'configuration change rejected; the last good state stays in force',
      );
      return 'rejected';
    }
    const { inputs, state } = compiled;
    const wanted = this.#override ?? inputs.config.dataplane;
    if (wanted !== this.#kind) {
      this.#rejected = [
        `${inputs.configFile}: dataplane: changing the dataplane from ${this.#kind} to ${wanted} needs \`dnsplane migrate --to ${wanted}\` (or a restart); keeping ${this.#kind}`,
      ];
      logger.warn({ event: 'change_rejected', problems: this.#rejected }, 'dataplane change rejected');
      return 'rejected';
    }
    const fixed = this.#changedBuildFields(inputs.config);
    if (fixed.length > 0) {
      this.#rejected = fixed.map(
        (field) =>
          `${inputs.configFile}: ${field.path}: the running ${this.#kind} dataplane was built with ${JSON.stringify(field.running)}; ` +
          `changing it to ${JSON.stringify(field.next)} needs a restart of the daemon; keeping the last good state`,
      );
      logger.warn({ event: 'change_rejected', problems: this.#rejected }, 'configuration change needs a restart');
      return 'rejected';
    }
    const text = JSON.stringify(state);
    // Read before the install: an interface that appears while it runs differs from this
    // snapshot, so its event brings another install.
    const links = environment.links?.read();
    const linksBefore = this.#linksInstalled;
    const linksChanged = links !== undefined && linksBefore !== undefined && !sameLinks(links, linksBefore);
    const localServers = localServersKey(state, environment.nodeAddresses);
    const localServersBefore = this.#localServersInstalled;
    const localServersChanged = localServers !== undefined && localServersBefore !== undefined && localServers !== localServersBefore;
    if (this.#applied && this.#applied.text === text && !linksChanged && !localServersChanged) {
      this.#rejected = [];
      // The same state: settings outside it (statePath, log.level, driftCheckSeconds) may differ.
      this.#applied = { ...this.#applied, inputs };
      this.#applyRunSettings(inputs.config);
      this.#watch(inputs);
      logger.debug({ event: 'unchanged' }, 'inputs changed on disk but the desired state is the same');
      return 'unchanged';
    }
    if (linksChanged) {
      logger.info({ event: 'interfaces_changed', ...linkChanges(linksBefore, links) }, 'interfaces changed; installing again so every interface has the programs');
    }
    if (localServersChanged) {
      logger.info(
        { event: 'local_resolvers_changed', before: splitKey(localServersBefore), now: splitKey(localServers) },
        'trusted servers on the node changed; installing again so the parser reads their answers where they leave (and nftables keeps queries to them tracked)',
      );
    }
    try {
      await dataplane.install(state);
    } catch (error) {
      logger.error({ event: 'install_failed', err: error }, 'install failed; the last good state stays in force');
      this.#rejected = [error instanceof Error ? error.message : String(error)];
      return 'failed';
    }
    this.#rejected = [];
    this.#linksInstalled = links;
    this.#localServersInstalled = localServers;
    this.#remember(inputs, state);
    this.#applyRunSettings(inputs.config);
    this.#watch(inputs);
    logger.info({ event: 'applied', dataplane: this.#kind, ...summary(state) }, 'desired state installed');
    return 'applied';
  }

  /**
   * Writes learned entries to statePath: what the dataplane exports (the kernel) joined with
   * every entry known and still live (so a driver whose export misses entries loses none), in
   * the versioned format, bounded to stateMaxEntries. Returns how many were written.
   */
  async persist(): Promise<number> {
    const dataplane = this.#dataplane;
    const applied = this.#applied;
    if (!dataplane || !applied) return 0;
    const exported = await dataplane.exportLearned();
    // The store keeps the names it knows for entries the kernel exports without one.
    this.#known.recordAll(exported);
    this.#known.prune();
    this.#known.retainSets(new Set(applied.state.domainSets.map((s) => s.id)));
    const path = statePathOf(applied.inputs);
    const max = this.options.stateMaxEntries ?? DEFAULT_STATE_MAX_ENTRIES;
    const { text, count, dropped } = serializeLearned(this.#known.entries(), this.options.environment.clock.now(), max);
    await writeFileAtomic(path, text);
    this.#stateFile = { ...(this.#stateFile ?? { path }), path, saved: count, savedAt: new Date(this.options.environment.clock.now()).toISOString() };
    if (dropped > 0) this.options.logger.warn({ event: 'state_capped', path, dropped, max }, 'learned state over the cap: the soonest-expiring entries were not saved');
    this.options.logger.debug({ event: 'persisted', path, entries: count }, 'learned state saved');
    return count;
  }

  /** Live learned entries of the dataplane in force (names filled from what is known). */
  async learnedEntries(): Promise<LearnedEntryReport[]> {
    const dataplane = this.#dataplane;
    if (!dataplane) return [];
    const exported = await dataplane.exportLearned();
    return exported
      .map((e) => this.#withName(e))
      .sort((a, b) => a.setId - b.setId || a.family - b.family || (a.address < b.address ? -1 : 1))
      .map((e) => ({
        setId: e.setId,
        family: e.family,
        address: e.address,
        expiresAt: new Date(e.expiresAt).toISOString(),
        ...(e.name === undefined ? {} : { name: e.name }),
      }));
  }

  async #answer(request: AgentRequest): Promise<unknown> {
    switch (request.request) {
      case 'status':
        return this.status({ learned: request.learned === true, brief: request.brief === true, ...(request.detail === undefined ? {} : { detail: request.detail }) });
      case 'migrate': {
        const report = await this.migrate(request.to);
        return { migrated: report ?? null, status: await this.status({ learned: false }) };
      }
    }
  }

  /**
   * `brief`: the daemon's own state only (dataplane kind, last apply, start phases, state
   * file) — the dataplane is not asked, so it answers at once, also while an install or a
   * restore is running, and costs nothing at 100,000 learned entries. `detail: 'counters'` (a
   * metrics scrape): the dataplane's counters without reading every learned element where it
   * can (StatusOptions).
   */
  async status(options: { learned?: boolean; brief?: boolean; detail?: StatusDetail } = {}): Promise<AgentStatus> {
    const dataplane = this.#dataplane;
    const brief = options.brief === true && options.learned !== true;
    const dataplaneStatus = dataplane && !brief ? await dataplane.status(options.detail === undefined ? {} : { detail: options.detail }) : undefined;
    const applied = this.#applied;
    const configured = applied?.inputs.config.dataplane;
    const memory = this.options.environment.memory?.();
    return {
      pid: process.pid,
      startedAt: new Date(this.#startedAt).toISOString(),
      configFile: applied?.inputs.configFile ?? this.options.configPath,
      dataplane: this.#kind ?? 'none',
      ...(configured !== undefined && configured !== this.#kind ? { configuredDataplane: configured } : {}),
      objects: [...(dataplaneStatus?.objects ?? [])],
      counters: { ...(dataplaneStatus?.counters ?? {}) },
      ...(brief ? { brief: true } : { learned: dataplaneStatus?.learned ?? 0 }),
      ...(options.learned ? { learnedEntries: await this.learnedEntries() } : {}),
      ...(applied ? { lastApply: { at: new Date(applied.at).toISOString(), ...summary(applied.state) } } : {}),
      ...(this.#stateFile ? { stateFile: this.#stateFile } : {}),
      migrations: this.#migrations.map((m) => ({ ...m })),
      rejected: [...this.#rejected],
      startup: { phasesMs: { ...this.#startup.phasesMs }, ...(this.#startup.restoredAt === undefined ? {} : { restoredAt: this.#startup.restoredAt }) },
      ...(memory === undefined ? {} : { memory: { rss: memory.rss, heapUsed: memory.heapUsed, heapTotal: memory.heapTotal, external: memory.external } }),
      ...(this.#repairs === undefined ? {} : { repairs: { ...this.#repairs, lastMissing: [...this.#repairs.lastMissing] } }),
      watches: { interfaces: this.#linkWatch?.state ?? 'off', removals: this.#removalWatch?.watch.state ?? 'off' },
      ...(this.#metrics === undefined ? {} : { metrics: { listen: this.#metrics.listen, state: this.#metrics.state } }),
    };
  }

  /** Stops watching, saves learned state, closes the driver; enforcement stays in force. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const { logger } = this.options;
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#persistTimer) clearInterval(this.#persistTimer);
    if (this.#driftTimer) clearInterval(this.#driftTimer);
    this.#removalWatch?.watch.close();
    this.#removalWatch = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#linkWatch?.close();
    this.#linkWatch = undefined;
    await this.#queue;
    await this.#statusServer?.close();
    await this.#metricsChange;
    await this.#metrics?.server?.close();
    try {
      await this.persist();
    } catch (error) {
      logger.error({ event: 'persist_failed', err: error }, 'could not save learned state');
    }
    await this.#dataplane?.close();
    logger.info({ event: 'stopped', dataplane: this.#kind }, 'stopped; enforcement stays in force');
  }

  /** Fields the running driver was built with (DriverRegistration.builtFrom) that `next` changes. */
  #changedBuildFields(next: DnsplaneConfig): ReturnType<typeof changedBuildFields> {
    const running = this.#applied?.inputs.config;
    const registration = this.options.environment.drivers.find((d) => d.kind === this.#kind);
    return running === undefined || registration === undefined ? [] : changedBuildFields(registration, running, next);
  }

  /** The settings a running daemon takes from an accepted config: log.level, metrics.listen and the drift check's interval. */
  #applyRunSettings(config: DnsplaneConfig): void {
    if (this.options.logLevelFromConfig === true) this.options.logger.level = config.log.level;
    this.#followMetrics(config.metrics.listen);
    if (this.#stopped || this.#driftTimerSeconds === config.driftCheckSeconds) return;
    if (this.#driftTimer) clearInterval(this.#driftTimer);
    this.#driftTimer = undefined;
    this.#driftTimerSeconds = config.driftCheckSeconds;
    if (config.driftCheckSeconds === 0) return;
    this.#driftTimer = setInterval(() => this.#checkDriftLogged('periodic'), config.driftCheckSeconds * 1000);
    this.#driftTimer.unref();
  }

  /**
   * Serves Prometheus metrics on `listen` (absent: none): starts, moves or stops the endpoint
   * when the setting changes. A listen that fails (the port taken, the address not the node's)
   * is logged and shown in status; the daemon goes on, and the next accepted change tries again.
   */
  #followMetrics(listen: string | undefined): void {
    const factory = this.options.environment.metricsServer;
    const current = this.#metrics;
    if (this.#stopped) return;
    if (listen === undefined ? current === undefined : current?.listen === listen && current.state !== 'failed') return;
    const { logger } = this.options;
    if (listen !== undefined && factory === undefined) {
      logger.warn({ event: 'metrics_unavailable', listen }, 'metrics.listen is set but this build serves no metrics');
      return;
    }
    this.#metrics = listen === undefined ? undefined : { listen, state: 'starting' };
    const next = this.#metrics;
    this.#metricsChange = this.#metricsChange.then(async () => {
      await current?.server?.close();
      if (current?.server !== undefined) logger.info({ event: 'metrics_stopped', listen: current.listen }, 'metrics endpoint closed');
      if (next === undefined || factory === undefined || this.#stopped) return;
      try {
        const server = await factory(next.listen, async () => renderMetrics(await this.status({ detail: 'counters' })));
        if (this.#stopped || this.#metrics !== next) {
          await server.close(); // replaced while it started
          return;
        }
        next.server = server;
        next.state = 'serving';
        logger.info({ event: 'metrics_listening', listen: next.listen }, `Prometheus metrics at http://${next.listen}/metrics`);
      } catch (error) {
        next.state = 'failed';
        logger.error({ event: 'metrics_failed', listen: next.listen, err: error }, 'could not serve metrics');
      }
    });
  }

  #remember(inputs: LoadedInputs, state: DesiredState): void {
    this.#applied = { inputs, state, text: JSON.stringify(state), at: this.options.environment.clock.now() };
  }

  #watch(inputs: LoadedInputs): void {
    const { environment } = this.options;
    if (this.#stopped) {
      this.#watcher?.close();
      this.#watcher = undefined;
      return;
    }
    const configDir = dirname(inputs.configFile);
    const paths = new Set<string>([configDir, ...inputs.files.map((f) => dirname(f))]);
    for (const resource of inputs.config.resources ?? []) {
      const path = isAbsolute(resource) ? resource : resolvePath(configDir, resource);
      try {
        if (statSync(path).isDirectory()) paths.add(path);
      } catch {
        paths.add(dirname(path)); // not there yet: watch where it would appear
      }
    }
    const stateFile = basename(statePathOf(inputs));
    const watched = JSON.stringify([[...paths].sort(), stateFile]);
    // The same places: the watcher stays. Closing it drops the events it has not delivered yet —
    // a file written while an apply ran (its nft transaction already visible) went unnoticed.
    if (this.#watcher !== undefined && this.#watched === watched) return;
    const previous = this.#watcher;
    this.#watched = watched;
    this.#watcher = environment.watch([...paths].sort(), (_path, filename) => {
      if (filename !== undefined && (filename.startsWith('.') || filename === stateFile)) return;
      this.#scheduleReconcile();
    });
    if (previous !== undefined) {
      previous.close();
      // What changed while neither watcher saw it is read again (the result is 'unchanged' when nothing did).
      this.#scheduleReconcile();
    }
  }

  /**
   * Runs the drift check at once when the kernel says objects of the dataplane in force were
   * removed (removal-watch.ts); started again for the new kind after a migration.
   */
  #watchRemovals(): void {
    const { environment, logger } = this.options;
    const config = this.#applied?.inputs.config;
    const kind = this.#kind;
    const removals = environment.removals;
    if (removals === undefined || config === undefined || kind === undefined || this.#stopped) return;
    if (this.#removalWatch?.kind === kind) return;
    this.#removalWatch?.watch.close();
    const onRemoved = (): void => {
      // A flush prints a line per rule or filter: one check for the burst (a line that comes
      // while the check runs queues the next one, which sees what the running one missed).
      if (this.#removalCheckQueued) return;
      this.#removalCheckQueued = true;
      // Debug: our own detaches and re-applies are heard too; what the check finds is logged (`drift`).
      logger.debug({ event: 'removal_seen', dataplane: kind }, 'the kernel reports objects of the dataplane removed; checking now');
      this.#checkDriftLogged('kernel_event', () => (this.#removalCheckQueued = false));
    };
    const watch = new KeptWatch((onError) => removals(kind, config, onRemoved, onError), this.#watchRetry(), {
      failed: (error, retryInMs) =>
        logger.warn(
          { event: 'removal_watch_failed', err: error, retryInMs },
          'cannot watch for removed objects; starting the watch again later (the periodic drift check still runs)',
        ),
      restarted: () => {
        // What went while nobody listened is checked at once.
        logger.info({ event: 'removal_watch_restarted', dataplane: kind }, 'watching for removed objects again');
        this.#checkDriftLogged('watch_restarted');
      },
    });
    this.#removalWatch = { kind, watch };
    watch.open();
  }

  /** Re-installs (debounced, like a file change) when the interfaces differ from the last install's. */
  #watchLinks(): void {
    const { environment, logger } = this.options;
    const links = environment.links;
    if (links === undefined || this.#linkWatch !== undefined || this.#stopped) return;
    this.#linkWatch = new KeptWatch((onError) => links.watch(() => this.#installIfLinksChanged(), onError), this.#watchRetry(), {
      failed: (error, retryInMs) =>
        logger.warn(
          { event: 'interface_watch_failed', err: error, retryInMs },
          'cannot watch interfaces; starting the watch again later (until then new interfaces get the programs at the next change)',
        ),
      restarted: () => {
        // Interfaces that changed while nobody listened are installed for.
        logger.info({ event: 'interface_watch_restarted' }, 'watching interfaces again');
        this.#installIfLinksChanged();
      },
    });
    this.#linkWatch.open();
  }

  #watchRetry(): WatchRetry {
    const { environment } = this.options;
    return new WatchRetry(environment.watchRetryMs ?? DEFAULT_WATCH_RETRY_MS, environment.clock);
  }

  /** Also when a trusted server's address came to the node or left it (the watch reports addresses too). */
  #installIfLinksChanged(): void {
    const { links, nodeAddresses } = this.options.environment;
    const installed = this.#linksInstalled;
    if (links !== undefined && (installed === undefined || !sameLinks(links.read(), installed))) {
      this.#scheduleReconcile();
      return;
    }
    const state = this.#applied?.state;
    if (state === undefined || this.#localServersInstalled === undefined) return;
    if (localServersKey(state, nodeAddresses) !== this.#localServersInstalled) this.#scheduleReconcile();
  }

  #scheduleReconcile(): void {
    if (this.#stopped) return;
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      this.reconcile().catch((error: unknown) =>
        this.options.logger.error({ event: 'reconcile_failed', err: error }, 'reconcile failed'),
      );
    }, this.options.environment.debounceMs);
  }
}

const summary = stateCounts;

/** The trusted servers of `state` that are addresses of the node, as comparable text (undefined: not followed). */
function localServersKey(state: DesiredState, addresses: (() => ReadonlySet<string>) | undefined): string | undefined {
  if (addresses === undefined) return undefined;
  return trustedServersOnNode(state.dns.trustedServers, addresses()).map(formatTrustedServer).join(' ');
}

const splitKey = (key: string | undefined): string[] => (key === undefined || key === '' ? [] : key.split(' '));

/** `inputs` with the settings the last run's dataplane was built with (the marker): to build it again for its removal. */
function ranWith(inputs: LoadedInputs, marker: DataplaneMarker): LoadedInputs {
  const config = inputs.config;
  return {
    ...inputs,
    config: {
      ...config,
      iptables: { ...config.iptables, backend: marker.iptablesBackend ?? config.iptables.backend },
      nftables: { ...config.nftables, table: marker.nftablesTable ?? config.nftables.table },
      bpf: { ...config.bpf, pinRoot: marker.pinRoot ?? config.bpf.pinRoot },
    },
  };
}

function statePathOf(inputs: LoadedInputs): string {
  const path = inputs.config.statePath ?? '/var/lib/dnsplane/state.json';
  return isAbsolute(path) ? path : resolvePath(dirname(inputs.configFile), path);
}
