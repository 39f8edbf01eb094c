// Everything the CLI takes from the outside world, in one place, so tests can replace it:
// output streams, environment variables, signals, the clock, processes, the drivers, the
// input loader and file watching. `systemEnvironment()` is the real one.
import { watch as fsWatch } from 'node:fs';
import pino, { type Logger } from 'pino';
import {
  loadConfig,
  loadInputs,
  systemClock,
  systemProcessRunner,
  type Clock,
  type DnsplaneConfig,
  type LoadedInputs,
  type ProcessRunner,
} from '@dnsplane/core';
import { DnsParserProgram, nodeAddresses } from '@dnsplane/bpf-parser';
import { createNftablesDataplane } from '@dnsplane/nftables';
import { DRIVERS, type DriverRegistration } from './drivers.js';
import { ipMonitorLinkWatch, readSysfsLinks, type LinkSnapshot, type LinkWatchFactory } from './link-watch.js';
import { kernelRemovalWatch, type RemovalWatchFactory } from './removal-watch.js';
import { bpffsSharedPins, type SharedPins } from './shared-pins.js';
import { httpMetricsServer, type MetricsServerFactory } from './metrics-endpoint.js';

export interface TextSink {
  write(text: string): void;
}

export type StopSignal = 'SIGTERM' | 'SIGINT';
/** SIGHUP: read the config and resources again now, as daemons conventionally do (the default would end the process). */
export type ReloadSignal = 'SIGHUP';
export type AgentSignal = StopSignal | ReloadSignal;

export interface SignalSource {
  on(signal: AgentSignal, handler: () => void): void;
  off(signal: AgentSignal, handler: () => void): void;
}

/** Bytes, as `process.memoryUsage()` gives them. */
export interface MemoryReading {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
}

/**
 * Watches paths (files or directories); calls `onChange` with the watched path and, when
 * known, the name of the entry that changed inside it.
 */
export type WatchFactory = (
  paths: readonly string[],
  onChange: (path: string, filename: string | undefined) => void,
) => { close(): void };

export interface AgentEnvironment {
  readonly stdout: TextSink;
  readonly stderr: TextSink;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly clock: Clock;
  readonly runner: ProcessRunner;
  readonly signals: SignalSource;
  /** Where pino writes (stderr by default, so stdout stays for command output). */
  readonly logDestination: pino.DestinationStream;
  readonly drivers: readonly DriverRegistration[];
  readonly loadInputs: (configPath: string) => Promise<LoadedInputs>;
  /**
   * The config file alone (absent: the daemon does not build its dataplane before reading the
   * resources, so nothing is prepared ahead of install).
   */
  readonly loadConfig?: (configPath: string) => Promise<{ configFile: string; config: DnsplaneConfig }>;
  readonly watch: WatchFactory;
  /** Quiet period after a file change before the daemon re-applies. */
  readonly debounceMs: number;
  /** How often the daemon writes learned state to statePath. */
  readonly persistIntervalMs: number;
  /** The process's memory, reported by `status` (absent: not reported). */
  readonly memory?: () => MemoryReading;
  /** Keeps the shared bpffs pins across the old dataplane's remove() in a migration (absent: nothing kept). */
  readonly sharedPins?: SharedPins;
  /**
   * The namespace's interfaces and a watch on them: the daemon re-installs when interfaces
   * appear, go or are re-created (absent: no interface watch).
   */
  readonly links?: { readonly read: () => LinkSnapshot; readonly watch: LinkWatchFactory };
  /**
   * The namespace's own addresses (the watch above reports their changes too): a trusted server
   * that becomes or stops being one of them (a node-local resolver) changes where the tc
   * dataplanes attach the parser, so the daemon installs again. Absent: not followed.
   */
  readonly nodeAddresses?: () => ReadonlySet<string>;
  /** Tells the daemon at once when someone removed the dataplane's objects (absent: the periodic drift check alone). */
  readonly removals?: RemovalWatchFactory;
  /**
   * Deletes the nft table `inet <table>` if it is there (one an earlier run owned under another
   * name). Absent: left alone.
   */
  readonly retireNftablesTable?: (table: string, logger: Logger) => Promise<void>;
  /** Removes a bpffs pin folder an earlier run used under another name. Absent: left alone. */
  readonly retirePinRoot?: (pinRoot: string) => void;
  /** First delay before a failed watch is started again (default DEFAULT_WATCH_RETRY_MS, 5 s; doubles to 5 min). */
  readonly watchRetryMs?: number;
  /** Serves `metrics.listen` (absent: the setting is ignored, with a warning). */
  readonly metricsServer?: MetricsServerFactory;
}

/** fs.watch on each path; paths that cannot be watched (vanished) are skipped. */
export const fsWatchFactory: WatchFactory = (paths, onChange) => {
  const watchers = paths.flatMap((path) => {
    try {
      const watcher = fsWatch(path, { persistent: false }, (_event, filename) => onChange(path, filename ?? undefined));
      watcher.on('error', () => onChange(path, undefined));
      return [watcher];
    } catch {
      return [];
    }
  });
  return { close: () => watchers.forEach((w) => w.close()) };
};

export function systemEnvironment(): AgentEnvironment {
  return {
    stdout: { write: (text) => void process.stdout.write(text) },
    stderr: { write: (text) => void process.stderr.write(text) },
    env: process.env,
    cwd: process.cwd(),
    clock: systemClock,
    runner: systemProcessRunner,
    signals: {
      on: (signal, handler) => void process.on(signal, handler),
      off: (signal, handler) => void process.off(signal, handler),
    },
    logDestination: pino.destination({ dest: 2, sync: true }),
    drivers: DRIVERS,
    loadInputs,
    loadConfig,
    watch: fsWatchFactory,
    debounceMs: 200,
    persistIntervalMs: 30_000,
    memory: () => process.memoryUsage(),
    sharedPins: bpffsSharedPins,
    links: { read: () => readSysfsLinks(), watch: ipMonitorLinkWatch },
    nodeAddresses,
    removals: kernelRemovalWatch,
    metricsServer: httpMetricsServer,
    retirePinRoot: (pinRoot) => DnsParserProgram.removePins(pinRoot),
    retireNftablesTable: async (table, logger) => {
      // A driver for that table alone: without a pin root it owns no tc program or pin.
      const dataplane = createNftablesDataplane({ tableName: table, logger, processRunner: systemProcessRunner });
      try {
        await dataplane.remove();
      } finally {
        await dataplane.close();
      }
    },
  };
}
