// Dependency injection (inversify 7, no decorators): every service is bound by token with
// toConstantValue/toDynamicValue; the dataplane driver is chosen through the registry bound
// here, from the `dataplane:` of the loaded config (or a --dataplane override).
import { Container } from 'inversify';
import pino, { type Logger } from 'pino';
import type { Clock, Dataplane, DataplaneKind, ProcessRunner } from '@dnsplane/core';
import { DriverRegistry } from './drivers.js';
import type { AgentEnvironment } from './environment.js';
import type { LoadedInputs } from '@dnsplane/core';

/** Builds the driver for a kind from loaded inputs (throws NotSupportedError when missing). */
export type DataplaneProvider = (kind: DataplaneKind, inputs: LoadedInputs) => Dataplane;

export interface Services {
  environment: AgentEnvironment;
  logger: Logger;
  clock: Clock;
  runner: ProcessRunner;
  drivers: DriverRegistry;
  dataplaneProvider: DataplaneProvider;
}

export const TOKENS: { readonly [K in keyof Services]: symbol } = {
  environment: Symbol.for('dnsplane.environment'),
  logger: Symbol.for('dnsplane.logger'),
  clock: Symbol.for('dnsplane.clock'),
  runner: Symbol.for('dnsplane.runner'),
  drivers: Symbol.for('dnsplane.drivers'),
  dataplaneProvider: Symbol.for('dnsplane.dataplaneProvider'),
};

export function resolve<K extends keyof Services>(container: Container, key: K): Services[K] {
  return container.get<Services[K]>(TOKENS[key]);
}

export interface ContainerOptions {
  readonly logLevel: string;
}

export function createContainer(environment: AgentEnvironment, options: ContainerOptions): Container {
  const container = new Container();
  container.bind<AgentEnvironment>(TOKENS.environment).toConstantValue(environment);
  container.bind<Clock>(TOKENS.clock).toConstantValue(environment.clock);
  container.bind<ProcessRunner>(TOKENS.runner).toConstantValue(environment.runner);
  container
    .bind<Logger>(TOKENS.logger)
    .toDynamicValue(() =>
      pino({ level: options.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, environment.logDestination),
    )
    .inSingletonScope();
  container
    .bind<DriverRegistry>(TOKENS.drivers)
    .toDynamicValue(() => new DriverRegistry(environment.drivers))
    .inSingletonScope();
  container.bind<DataplaneProvider>(TOKENS.dataplaneProvider).toDynamicValue((context) => {
    const registry = context.get<DriverRegistry>(TOKENS.drivers);
    const logger = context.get<Logger>(TOKENS.logger);
    const clock = context.get<Clock>(TOKENS.clock);
    const runner = context.get<ProcessRunner>(TOKENS.runner);
    return (kind, inputs) =>
      registry.create(kind, {
        config: inputs.config,
        configFile: inputs.configFile,
        logger: logger.child({ dataplane: kind }),
        clock,
        runner,
      });
  });
  return container;
}
