// The daemon (`dnsplane run`): load, compile, install into the configured dataplane, restore
// learned state, then watch the config and resource files and re-apply on change.
// - A change that does not validate is rejected as a whole: its problems are logged and the
//   last good state stays in force.
// - Learned state is persisted to statePath periodically and on stop (atomic write).
// - stop() ends background work but never removes enforcement: rules, programs and maps stay.
import { statSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import type { Logger } from 'pino';
import {
  isInvalidInput,
  LearnedStore,
  type Dataplane,
  type DataplaneKind,
  type DesiredState,
  type LoadedInputs,
} from '@dnsplane/core';
import type { DataplaneProvider } from './container.js';
import { loadAndCompile, stateCounts } from './desired.js';
import type { AgentEnvironment } from './environment.js';
import { readLearnedState, writeFileAtomic } from './state-file.js';
import { StatusServer, type AgentStatus } from './status-socket.js';

export interface DaemonOptions {
  readonly configPath: string;
  /** Unix socket for `dnsplane status`; absent = no status API. */
  readonly socketPath?: string;
  /** Use this dataplane instead of the config's `dataplane:`. */
  readonly dataplaneOverride?: DataplaneKind;
  readonly environment: AgentEnvironment;
  readonly logger: Logger;
  readonly dataplaneProvider: DataplaneProvider;
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
  #debounce: NodeJS.Timeout | undefined;
  #persistTimer: NodeJS.Timeout | undefined;
  #statusServer: StatusServer | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #startedAt = 0;
  #stopped = false;
  /** Outcomes of every reconcile, in order (for status and tests). */
  readonly outcomes: ReconcileOutcome[] = [];

  constructor(private readonly options: DaemonOptions) {}

  get dataplane(): Dataplane | undefined {
    return this.#dataplane;
  }

  /** The state last installed. */
  get applied(): DesiredState | undefined {
    return this.#applied?.state;
  }

  /** The config last applied. */
  get config(): LoadedInputs['config'] | undefined {
    return this.#applied?.inputs.config;
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
      const server = new StatusServer(this.options.socketPath, () => this.status());
      await server.listen();
      this.#statusServer = server;
      logger.info({ event: 'status_listening', socket: this.options.socketPath }, 'status API listening');
    }
    const { inputs, state } = await loadAndCompile(environment.loadInputs, this.options.configPath);
    const kind = this.options.dataplaneOverride ?? inputs.config.dataplane;
    const dataplane = this.options.dataplaneProvider(kind, inputs);
    this.#dataplane = dataplane;
    this.#kind = kind;
    await dataplane.install(state);
    this.#remember(inputs, state);
    logger.info({ event: 'applied', dataplane: kind, ...summary(state) }, 'desired state installed');
    await this.#restoreLearned(inputs, state);
    this.#watch(inputs);
    this.#persistTimer = setInterval(() => {
      this.persist().catch((error: unknown) => logger.error({ event: 'persist_failed', err: error }, 'could not save learned state'));
    }, environment.persistIntervalMs);
    // Not unref'd: while the daemon runs, this timer alone keeps the process alive.
  }

  /** Re-reads and re-applies now (changes are serialised: one reconcile at a time). */
  reconcile(): Promise<ReconcileOutcome> {
    const next = this.#queue.then(() => this.#reconcileOnce());
    this.#queue = next.catch(() => undefined);
    return next;
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
    const wanted = this.options.dataplaneOverride ?? inputs.config.dataplane;
    if (wanted !== this.#kind) {
      this.#rejected = [
        `${inputs.configFile}: dataplane: changing the dataplane from ${this.#kind} to ${wanted} needs \`dnsplane migrate\` (or a restart); keeping ${this.#kind}`,
      ];
      logger.warn({ event: 'change_rejected', problems: this.#rejected }, 'dataplane change rejected');
      return 'rejected';
    }
    const text = JSON.stringify(state);
    if (this.#applied && this.#applied.text === text) {
      this.#rejected = [];
      this.#watch(inputs);
      logger.debug({ event: 'unchanged' }, 'inputs changed on disk but the desired state is the same');
      return 'unchanged';
    }
    try {
      await dataplane.install(state);
    } catch (error) {
      logger.error({ event: 'install_failed', err: error }, 'install failed; the last good state stays in force');
      this.#rejected = [error instanceof Error ? error.message : String(error)];
      return 'failed';
    }
    this.#rejected = [];
    this.#remember(inputs, state);
    this.#watch(inputs);
    logger.info({ event: 'applied', dataplane: this.#kind, ...summary(state) }, 'desired state installed');
    return 'applied';
  }

  /** Writes the dataplane's learned entries to statePath; returns how many. */
  async persist(): Promise<number> {
    const dataplane = this.#dataplane;
    const applied = this.#applied;
    if (!dataplane || !applied) return 0;
    const entries = await dataplane.exportLearned();
    const store = new LearnedStore(this.options.environment.clock);
    store.recordAll(entries);
    const path = statePathOf(applied.inputs);
    await writeFileAtomic(path, store.serialize());
    this.options.logger.debug({ event: 'persisted', path, entries: store.size }, 'learned state saved');
    return store.size;
  }

  async status(): Promise<AgentStatus> {
    const dataplane = this.#dataplane;
    const dataplaneStatus = dataplane ? await dataplane.status() : undefined;
    const applied = this.#applied;
    return {
      pid: process.pid,
      startedAt: new Date(this.#startedAt).toISOString(),
      configFile: applied?.inputs.configFile ?? this.options.configPath,
      dataplane: this.#kind ?? 'none',
      objects: [...(dataplaneStatus?.objects ?? [])],
      counters: { ...(dataplaneStatus?.counters ?? {}) },
      learned: dataplaneStatus?.learned ?? 0,
      ...(applied ? { lastApply: { at: new Date(applied.at).toISOString(), ...summary(applied.state) } } : {}),
      rejected: [...this.#rejected],
    };
  }

  /** Stops watching, saves learned state, closes the driver; enforcement stays in force. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const { logger } = this.options;
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#persistTimer) clearInterval(this.#persistTimer);
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#queue;
    await this.#statusServer?.close();
    try {
      await this.persist();
    } catch (error) {
      logger.error({ event: 'persist_failed', err: error }, 'could not save learned state');
    }
    await this.#dataplane?.close();
    logger.info({ event: 'stopped', dataplane: this.#kind }, 'stopped; enforcement stays in force');
  }

  #remember(inputs: LoadedInputs, state: DesiredState): void {
    this.#applied = { inputs, state, text: JSON.stringify(state), at: this.options.environment.clock.now() };
  }

  async #restoreLearned(inputs: LoadedInputs, state: DesiredState): Promise<void> {
    const { logger } = this.options;
    const path = statePathOf(inputs);
    try {
      const saved = await readLearnedState(path);
      if (!saved) return;
      const sets = new Set(state.domainSets.map((s) => s.id));
      const now = this.options.environment.clock.now();
      const entries = saved.filter((e) => sets.has(e.setId) && e.expiresAt > now);
      await this.#dataplane?.importLearned(entries);
      logger.info({ event: 'learned_restored', path, entries: entries.length, skipped: saved.length - entries.length }, 'learned state restored');
    } catch (error) {
      logger.warn({ event: 'learned_restore_failed', path, err: error }, 'could not restore learned state; starting without it');
    }
  }

  #watch(inputs: LoadedInputs): void {
    const { environment } = this.options;
    this.#watcher?.close();
    if (this.#stopped) return;
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
    this.#watcher = environment.watch([...paths].sort(), (_path, filename) => {
      if (filename !== undefined && (filename.startsWith('.') || filename === stateFile)) return;
      this.#scheduleReconcile();
    });
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

function statePathOf(inputs: LoadedInputs): string {
  const path = inputs.config.statePath ?? '/var/lib/dnsplane/state.json';
  return isAbsolute(path) ? path : resolvePath(dirname(inputs.configFile), path);
}
