// `dnsplane apply`: compile and either print what would be programmed (--dry-run, no root,
// no kernel) or install it once into the dataplane and exit (enforcement stays).
import { DATAPLANE_KINDS, NotSupportedError, type DataplaneKind } from '@dnsplane/core';
import { z } from 'zod';
import type { Command, CommandContext } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { resolve } from '../container.js';
import { configPathFrom, describeCounts, loadAndCompile, stateCounts } from '../desired.js';
import { parseCommandLine } from '../usage.js';

export const dataplaneSchema = z.enum(DATAPLANE_KINDS as unknown as [DataplaneKind, ...DataplaneKind[]], {
  error: () => `must be one of ${DATAPLANE_KINDS.join(', ')}`,
});

const schema = z.object({
  config: z.string().min(1, 'needs a file name').optional(),
  dataplane: dataplaneSchema.optional(),
  'dry-run': z.boolean().optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const APPLY_OPTIONS = {
  config: { type: 'string', short: 'c' },
  dataplane: { type: 'string' },
  'dry-run': { type: 'boolean' },
} as const;

export const applyCommand: Command = {
  name: 'apply',
  summary: 'compile and install once (--dry-run: print what would be programmed)',
  help: `Usage: dnsplane apply [--dry-run] [-c FILE] [--dataplane nftables|iptables|ebpf]

Compiles the config and its resources. With --dry-run, prints the desired state and, for each
dataplane driver this build has, the exact document it would program (its render()); needs no
root and touches no kernel state. Without --dry-run, installs the desired state once into the
dataplane and exits; enforcement stays in force (use \`dnsplane run\` to keep it up to date).

Options:
  -c, --config FILE        config file (default: $DNSPLANE_CONFIG, else ./dnsplane.yaml)
  --dataplane KIND         use this dataplane instead of the config's dataplane:
  --dry-run                print only; change nothing
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('apply', argv, APPLY_OPTIONS, schema);
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    const options = {
      configPath: configPathFrom(args.config, context.environment.env),
      logLevel: args['log-level'] ?? 'warn',
      ...(args.dataplane === undefined ? {} : { dataplane: args.dataplane }),
    };
    return args['dry-run'] ? dryRun(context, options) : applyOnce(context, options);
  },
};

export interface ApplyOptions {
  readonly configPath: string;
  readonly logLevel: string;
  readonly dataplane?: DataplaneKind;
}

/** Prints the desired state and every implemented driver's rendering. No kernel access. */
export async function dryRun(context: CommandContext, options: ApplyOptions): Promise<number> {
  const container = context.container(options.logLevel);
  const { environment } = context;
  const drivers = resolve(container, 'drivers');
  const provider = resolve(container, 'dataplaneProvider');
  const logger = resolve(container, 'logger');
  if (options.dataplane !== undefined && !drivers.has(options.dataplane)) {
    throw new NotSupportedError(`dataplane ${options.dataplane} is not implemented yet`);
  }
  const { inputs, state } = await loadAndCompile(environment.loadInputs, options.configPath);
  const selected = options.dataplane ?? inputs.config.dataplane;
  const kinds = options.dataplane === undefined ? drivers.implemented() : [options.dataplane];
  const out: string[] = [];
  out.push(`# dnsplane apply --dry-run: ${inputs.configFile}`);
  out.push(`# dataplane: ${selected}${drivers.has(selected) ? '' : ' (not implemented yet)'}`);
  out.push(`# ${describeCounts(stateCounts(state))}`);
  out.push('', '## desired state', JSON.stringify(state, null, 2));
  for (const kind of kinds) {
    const dataplane = provider(kind, inputs);
    try {
      out.push('', `## ${kind}${kind === selected ? ' (selected)' : ''}: render()`, dataplane.render(state).replace(/\n$/, ''));
    } finally {
      await dataplane.close();
    }
  }
  for (const kind of DATAPLANE_KINDS) {
    if (!drivers.has(kind) && options.dataplane === undefined) out.push('', `## ${kind}: not implemented yet`);
  }
  environment.stdout.write(`${out.join('\n')}\n`);
  if (!drivers.has(selected)) {
    logger.warn({ event: 'dataplane_not_implemented', dataplane: selected }, `dataplane ${selected} is not implemented yet`);
  }
  return 0;
}

/** Installs the desired state once into the selected dataplane. */
export async function applyOnce(context: CommandContext, options: ApplyOptions): Promise<number> {
  const container = context.container(options.logLevel);
  const logger = resolve(container, 'logger');
  const provider = resolve(container, 'dataplaneProvider');
  const { inputs, state } = await loadAndCompile(context.environment.loadInputs, options.configPath);
  const kind = options.dataplane ?? inputs.config.dataplane;
  const dataplane = provider(kind, inputs);
  try {
    await dataplane.install(state);
  } finally {
    await dataplane.close();
  }
  logger.info({ event: 'applied', dataplane: kind }, 'desired state installed');
  context.environment.stdout.write(
    `applied to ${kind}: ${describeCounts(stateCounts(state))}\n`,
  );
  return 0;
}
