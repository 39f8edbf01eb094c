// `dnsplane validate -c FILE`: load and compile; print a summary, or every problem.
import { z } from 'zod';
import type { Command } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { configPathFrom, describeCounts, loadAndCompile, stateCounts } from '../desired.js';
import { parseCommandLine } from '../usage.js';

const schema = z.object({
  config: z.string().min(1, 'needs a file name').optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const validateCommand: Command = {
  name: 'validate',
  summary: 'check a config and its resources; print every problem',
  help: `Usage: dnsplane validate [-c FILE]

Loads the config and every Policy/Endpoint document it names, compiles them, and prints a
summary. On bad input prints one line per problem (file#document: field: reason) to stderr
and exits 1. Nothing is applied.

Options:
  -c, --config FILE   config file (default: $DNSPLANE_CONFIG, else ./dnsplane.yaml)
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('validate', argv, { config: { type: 'string', short: 'c' } }, schema);
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    const { environment } = context;
    context.container(args['log-level'] ?? 'warn');
    const { inputs, state } = await loadAndCompile(environment.loadInputs, configPathFrom(args.config, environment.env));
    environment.stdout.write(
      `ok: ${inputs.configFile}: ${describeCounts(stateCounts(state))} from ${inputs.files.length} resource ` +
        `file${inputs.files.length === 1 ? '' : 's'}; dataplane ${inputs.config.dataplane}\n`,
    );
    return 0;
  },
};
