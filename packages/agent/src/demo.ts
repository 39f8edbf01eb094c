// `dnsplane demo`: the live demo in a throw-away lab. The lab is test code (test/lab, outside
// this package's build), so the demo runs test/lab/demo.ts in a child process with
// `node --import tsx` (tsx is a root dev dependency installed by the bootstrap) from the
// repository root; `--dry-run` keeps the old, root-free behaviour (the example's dry run).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { Command } from './command.js';
import { GLOBAL_HELP, logLevelSchema } from './command.js';
import { dataplaneSchema, dryRun } from './commands/apply.js';
import { EXAMPLE_CONFIG } from './commands/demo.js';
import { parseCommandLine } from './usage.js';

/** The repository root (src/ and dist/ sit at the same depth). */
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const DEMO_SCRIPT = fileURLToPath(new URL('../../../test/lab/demo.ts', import.meta.url));

const schema = z.object({
  dataplane: dataplaneSchema.optional(),
  keep: z.boolean().optional(),
  'dry-run': z.boolean().optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const liveDemoCommand: Command = {
  name: 'demo',
  summary: 'live demo: a lab of network namespaces, the agent with the example policy, allowed and denied connections',
  help: `Usage: dnsplane demo [--dataplane KIND] [--keep] [--dry-run]

Builds a throw-away lab of network namespaces (DNS servers, a web server, two workloads),
starts the agent with the embedded example (examples/dnsplane.yaml and examples/policies,
adapted to the lab), shows allowed and denied connections (curl), the learned members and the
parser counters (dnsplane status), then tears everything down. Needs root and the bootstrap
(npm run bootstrap).

Options:
  --dataplane KIND   nftables (the example's default), iptables or ebpf
  --keep             leave the lab and the agent running; prints how to explore and remove them
  --dry-run          only print what the example compiles to (no root, no lab)
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine(
      'demo',
      argv,
      { dataplane: { type: 'string' }, keep: { type: 'boolean' }, 'dry-run': { type: 'boolean' } },
      schema,
    );
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    if (args['dry-run']) return dryRun(context, { configPath: EXAMPLE_CONFIG, logLevel: args['log-level'] ?? 'warn' });
    if (!existsSync(DEMO_SCRIPT)) {
      context.environment.stderr.write(`dnsplane demo: ${DEMO_SCRIPT} is missing (the live demo runs from a repository checkout)\n`);
      return 1;
    }
    const demoArgs = [
      ...(args.dataplane === undefined ? [] : ['--dataplane', args.dataplane]),
      ...(args.keep ? ['--keep'] : []),
    ];
    const child = spawn(process.execPath, ['--import', 'tsx', DEMO_SCRIPT, ...demoArgs], { cwd: REPO_ROOT, stdio: 'inherit' });
    // Ctrl-C reaches the child through the terminal's process group; the demo tears down itself.
    return new Promise<number>((resolve) => {
      child.once('error', (error) => {
        context.environment.stderr.write(`dnsplane demo: could not start ${DEMO_SCRIPT}: ${error.message}\n`);
        resolve(1);
      });
      child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
    });
  },
};
