// What a command is: a name, its help text and a run function over the agent environment.
import type { Container } from 'inversify';
import { z } from 'zod';
import { createContainer } from './container.js';
import type { AgentEnvironment } from './environment.js';

export interface CommandContext {
  readonly environment: AgentEnvironment;
  /** Builds the DI container once the command knows its log level. */
  readonly container: (logLevel: string) => Container;
}

export interface Command {
  readonly name: string;
  /** One line for `dnsplane --help`. */
  readonly summary: string;
  /** Full `dnsplane <name> --help` text. */
  readonly help: string;
  run(argv: readonly string[], context: CommandContext): Promise<number>;
}

export const LOG_LEVEL_VALUES = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const logLevelSchema = z.enum(LOG_LEVEL_VALUES, {
  error: () => `must be one of ${LOG_LEVEL_VALUES.join(', ')}`,
});

export const GLOBAL_HELP = `Global options:
  --log-level LEVEL   fatal|error|warn|info|debug|trace|silent (logs go to stderr)
  -h, --help          show this help`;

export function commandContext(environment: AgentEnvironment): CommandContext {
  return { environment, container: (logLevel) => createContainer(environment, { logLevel }) };
}
