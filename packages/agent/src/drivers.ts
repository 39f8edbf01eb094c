// The dataplane driver registry: which `dataplane:` values this build can enforce with.
// One line per implemented driver — add yours to DRIVERS. A kind without a line is reported
// as NotSupportedError ("dataplane X is not implemented yet").
//
// A factory must not touch the kernel: `apply --dry-run` builds every registered driver just
// to call its pure `render()`, without root. Kernel work starts in `install()`.
import {
  NotSupportedError,
  type Clock,
  type Dataplane,
  type DataplaneKind,
  type DnsplaneConfig,
  type ProcessRunner,
} from '@dnsplane/core';
import { createEbpfDataplane } from '@dnsplane/ebpf';
import { createIptablesDataplane, inlineParsing } from '@dnsplane/iptables';
import { createNftablesDataplane } from '@dnsplane/nftables';
import type { Logger } from 'pino';

/** What a driver factory gets: the loaded config and the injected effects. */
export interface DriverContext {
  readonly config: DnsplaneConfig;
  readonly configFile: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly runner: ProcessRunner;
}

export type DataplaneFactory = (context: DriverContext) => Dataplane;

export interface DriverRegistration {
  readonly kind: DataplaneKind;
  /**
   * The config fields (dotted paths) `create` reads. The driver is built with them, so a running
   * daemon cannot change them: a reload that does is rejected (a restart applies it).
   */
  readonly builtFrom: readonly string[];
  readonly create: DataplaneFactory;
}

/** The value at a dotted path of the config (undefined when a step is missing). */
function configValue(config: DnsplaneConfig, path: string): unknown {
  let value: unknown = config;
  for (const step of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[step];
  }
  return value;
}

/** The fields of `builtFrom` whose values differ between the running config and `next`. */
export function changedBuildFields(
  registration: DriverRegistration,
  running: DnsplaneConfig,
  next: DnsplaneConfig,
): Array<{ readonly path: string; readonly running: unknown; readonly next: unknown }> {
  return registration.builtFrom.flatMap((path) => {
    const before = configValue(running, path);
    const after = configValue(next, path);
    return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ path, running: before, next: after }];
  });
}

/** The implemented drivers, in the order `apply --dry-run` prints them. */
export const DRIVERS: readonly DriverRegistration[] = [
  {
    kind: 'nftables',
    builtFrom: [
      'nftables.table',
      'nftables.markMask',
      'nftables.mirrorDrainIntervalMs',
      'nftables.untrackDns',
      'nftables.answerMark',
      'bpf.pinRoot',
    ],
    create: ({ config, logger, clock, runner }) =>
      createNftablesDataplane({
        logger,
        clock,
        processRunner: runner,
        tableName: config.nftables.table,
        markMask: config.nftables.markMask,
        mirrorDrainIntervalMs: config.nftables.mirrorDrainIntervalMs,
        untrackDns: config.nftables.untrackDns,
        answerMark: config.nftables.answerMark,
        pinRoot: config.bpf.pinRoot,
      }),
  },
  {
    kind: 'iptables',
    builtFrom: ['iptables.backend', 'bpf.pinRoot'],
    create: ({ config, logger, clock, runner }) =>
      createIptablesDataplane({ backend: config.iptables.backend, runner, logger, ...inlineParsing({ pinRoot: config.bpf.pinRoot, clock }) }),
  },
  {
    kind: 'ebpf',
    builtFrom: ['bpf.pinRoot'],
    create: ({ config, logger, clock }) =>
      createEbpfDataplane({ logger, clock, pinRoot: config.bpf.pinRoot }),
  },
];

export class DriverRegistry {
  readonly #factories = new Map<DataplaneKind, DataplaneFactory>();

  constructor(registrations: readonly DriverRegistration[]) {
    for (const registration of registrations) this.#factories.set(registration.kind, registration.create);
  }

  /** Kinds with a driver, in registration order. */
  implemented(): DataplaneKind[] {
    return [...this.#factories.keys()];
  }

  has(kind: DataplaneKind): boolean {
    return this.#factories.has(kind);
  }

  /** Builds the driver for `kind`; NotSupportedError when this build has none. */
  create(kind: DataplaneKind, context: DriverContext): Dataplane {
    const factory = this.#factories.get(kind);
    if (!factory) throw new NotSupportedError(`dataplane ${kind} is not implemented yet`);
    return factory(context);
  }
}
