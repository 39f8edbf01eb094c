// `dnsplane demo`: for now, the dry run of the embedded example (examples/dnsplane.yaml);
// later issues turn it into the live lab demo.
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { Command } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { parseCommandLine } from '../usage.js';
import { dryRun } from './apply.js';

/** examples/dnsplane.yaml of the repository (src/ and dist/ sit at the same depth). */
export const EXAMPLE_CONFIG = fileURLToPath(new URL('../../../../examples/dnsplane.yaml', import.meta.url));

const schema = z.object({ help: z.boolean().optional(), 'log-level': logLevelSchema.optional() });

export const demoCommand: Command = {
  name: 'demo',
  summary: 'show what the example policy compiles to (dry run of examples/dnsplane.yaml)',
  help: `Usage: dnsplane demo

Runs \`dnsplane apply --dry-run -c examples/dnsplane.yaml\`: prints the desired state of the
embedded example and every implemented driver's rendering. Needs no root.

${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('demo', argv, {}, schema);
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    return dryRun(context, { configPath: EXAMPLE_CONFIG, logLevel: args['log-level'] ?? 'warn' });
  },
};
