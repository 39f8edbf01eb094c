// `dnsplane uninstall`: removes everything dnsplane created, for every dataplane.
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import type { Command } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { resolve } from '../container.js';
import { configPathFrom } from '../desired.js';
import { AgentAlreadyRunningError, DEFAULT_SOCKET_PATH, fetchStatus, isAgentUnreachable } from '../status-socket.js';
import { uninstall } from '../uninstall.js';
import { parseCommandLine } from '../usage.js';

const schema = z.object({
  config: z.string().min(1, 'needs a file name').optional(),
  socket: z.string().min(1, 'needs a path').optional(),
  'keep-state': z.boolean().optional(),
  json: z.boolean().optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const uninstallCommand: Command = {
  name: 'uninstall',
  summary: 'remove every kernel object dnsplane created (all dataplanes), pins and state',
  help: `Usage: dnsplane uninstall [-c FILE] [--keep-state] [--socket PATH] [--json]

Removes everything dnsplane created, for every dataplane this build has (not only the
configured one): the nft table, iptables/ip6tables chains and jumps (legacy and nft
backends), tc filters and the clsact qdiscs it added, pinned programs and maps (the whole
bpf.pinRoot folder), ipsets named dnsplane…, and the learned-state file with its dataplane
marker (kept with --keep-state). Names come from the config (-c): nftables.table,
bpf.pinRoot, statePath. Refuses while a daemon answers on the status socket: stop it first.
Exits 1 if any step failed (every step is still attempted).

Options:
  -c, --config FILE   config file (default: $DNSPLANE_CONFIG, else ./dnsplane.yaml)
  --keep-state        keep statePath (learned entries) and its dataplane marker
  --socket PATH       status socket of a daemon that must not be running
                      (default: $DNSPLANE_SOCKET, else ${DEFAULT_SOCKET_PATH})
  --json              print the steps as JSON
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine(
      'uninstall',
      argv,
      { config: { type: 'string', short: 'c' }, socket: { type: 'string' }, 'keep-state': { type: 'boolean' }, json: { type: 'boolean' } },
      schema,
    );
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    const { environment } = context;
    const socketPath = args.socket ?? (environment.env['DNSPLANE_SOCKET'] || DEFAULT_SOCKET_PATH);
    const running = await fetchStatus(socketPath, 2_000).catch((error: unknown) => {
      if (isAgentUnreachable(error)) return undefined;
      throw error;
    });
    if (running !== undefined) {
      throw new AgentAlreadyRunningError(`a dnsplane daemon (pid ${running.pid}) answers on ${socketPath}: stop it before uninstalling`);
    }
    const container = context.container(args['log-level'] ?? 'warn');
    const inputs = await environment.loadInputs(configPathFrom(args.config, environment.env));
    const statePath = isAbsolute(inputs.config.statePath) ? inputs.config.statePath : resolvePath(dirname(inputs.configFile), inputs.config.statePath);
    const steps = await uninstall({
      inputs,
      statePath,
      kinds: resolve(container, 'drivers').implemented(),
      provider: resolve(container, 'dataplaneProvider'),
      runner: environment.runner,
      logger: resolve(container, 'logger'),
      keepState: args['keep-state'] === true,
    });
    if (args.json) environment.stdout.write(`${JSON.stringify(steps, null, 2)}\n`);
    else for (const s of steps) environment.stdout.write(`${s.ok ? 'ok    ' : 'FAILED'} ${s.step}${s.detail === undefined ? '' : `: ${s.detail}`}\n`);
    return steps.every((s) => s.ok) ? 0 : 1;
  },
};
