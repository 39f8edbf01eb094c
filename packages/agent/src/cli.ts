// The `dnsplane` command line: dispatches to a command; maps errors to exit codes
// (0 ok, 1 failed or bad input, 2 wrong command line). Output goes to stdout, logs to stderr.
import { isInvalidInput, isNotSupported, isKernelError } from '@dnsplane/core';
import { commandContext, GLOBAL_HELP, type Command } from './command.js';
import { applyCommand } from './commands/apply.js';
import { liveDemoCommand as demoCommand } from './demo.js';
import { migrateCommand } from './commands/migrate.js';
import { runCommand } from './commands/run.js';
import { schemaCommand } from './commands/schema.js';
import { statusCommand } from './commands/status.js';
import { uninstallCommand } from './commands/uninstall.js';
import { validateCommand } from './commands/validate.js';
import { systemEnvironment, type AgentEnvironment } from './environment.js';
import { isAgentAlreadyRunning, isAgentUnreachable } from './status-socket.js';
import { isUsageError } from './usage.js';

export const COMMANDS: readonly Command[] = [
  validateCommand,
  applyCommand,
  runCommand,
  statusCommand,
  migrateCommand,
  uninstallCommand,
  schemaCommand,
  demoCommand,
];

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export function topLevelHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Usage: dnsplane <command> [options]

Domain-name network policy for Linux, learned inline by an eBPF DNS parser.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run \`dnsplane <command> --help\` for the options of a command.
${GLOBAL_HELP}
`;
}

/** Runs the CLI; `environment` is replaceable for tests. Resolves to the exit code. */
export async function main(argv: string[], environment: AgentEnvironment = systemEnvironment()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    environment.stderr.write(topLevelHelp());
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    environment.stdout.write(topic ? `${topic.help}\n` : topLevelHelp());
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    const what = name.startsWith('-') ? `unknown option '${name}' (options go after the command)` : `unknown command '${name}'`;
    environment.stderr.write(`dnsplane: ${what}; commands: ${COMMANDS.map((c) => c.name).join(', ')}\n`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, commandContext(environment));
  } catch (error) {
    return reportError(error, environment);
  }
}

function reportError(error: unknown, environment: AgentEnvironment): number {
  if (isUsageError(error)) {
    const hint = error.command === undefined ? '' : `\nRun \`dnsplane ${error.command} --help\` for usage.`;
    environment.stderr.write(`${error.message}${hint}\n`);
    return EXIT_USAGE;
  }
  if (isInvalidInput(error)) {
    environment.stderr.write(`invalid input (${error.problems.length} problem${error.problems.length === 1 ? '' : 's'}); nothing was applied:\n${error.message}\n`);
    return EXIT_FAILED;
  }
  if (isNotSupported(error) || isAgentUnreachable(error) || isAgentAlreadyRunning(error)) {
    environment.stderr.write(`dnsplane: ${error.message}\n`);
    return EXIT_FAILED;
  }
  if (isKernelError(error)) {
    environment.stderr.write(`dnsplane: kernel error: ${error.message}\n`);
    return EXIT_FAILED;
  }
  environment.stderr.write(`dnsplane: ${error instanceof Error ? error.message : String(error)}\n`);
  return EXIT_FAILED;
}
