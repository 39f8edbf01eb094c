// `dnsplane run`: the daemon. Runs until SIGTERM/SIGINT; stopping leaves enforcement in force.
// SIGHUP reads the config and resources again at once.
import { z } from 'zod';
import type { Command } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { resolve } from '../container.js';
import { Daemon } from '../daemon.js';
import { configPathFrom } from '../desired.js';
import type { StopSignal } from '../environment.js';
import { DEFAULT_SOCKET_PATH } from '../status-socket.js';
import { parseCommandLine } from '../usage.js';
import { dataplaneSchema } from './apply.js';

const schema = z.object({
  config: z.string().min(1, 'needs a file name').optional(),
  dataplane: dataplaneSchema.optional(),
  socket: z.string().min(1, 'needs a path').optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const runCommand: Command = {
  name: 'run',
  summary: 'the daemon: apply, watch the files, re-apply on change, serve status',
  help: `Usage: dnsplane run [-c FILE] [--socket PATH] [--dataplane KIND]

Loads and compiles the config and its resources, installs them into the dataplane, restores
learned DNS state from statePath, then watches the config and resource files and re-applies
on every change. A change that does not validate is rejected (its problems are logged) and the
last good state stays in force. Learned state is saved to statePath periodically and on exit.
SIGTERM/SIGINT stop the daemon cleanly; enforcement stays in the kernel. SIGHUP reads the
config and resources again at once and applies what changed, as a change on disk does (for
file systems whose changes are not seen, e.g. some network mounts).

Options:
  -c, --config FILE        config file (default: $DNSPLANE_CONFIG, else ./dnsplane.yaml)
  --socket PATH            status socket (default: $DNSPLANE_SOCKET, else ${DEFAULT_SOCKET_PATH})
  --dataplane KIND         use this dataplane instead of the config's dataplane:
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('run', argv, {
      config: { type: 'string', short: 'c' },
      dataplane: { type: 'string' },
      socket: { type: 'string' },
    }, schema);
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    const { environment } = context;
    const container = context.container(args['log-level'] ?? 'info');
    const logger = resolve(container, 'logger');
    const daemon = new Daemon({
      configPath: configPathFrom(args.config, environment.env),
      socketPath: args.socket ?? (environment.env['DNSPLANE_SOCKET'] || DEFAULT_SOCKET_PATH),
      environment,
      logger,
      dataplaneProvider: resolve(container, 'dataplaneProvider'),
      ...(args.dataplane === undefined ? {} : { dataplaneOverride: args.dataplane }),
      // Without --log-level, the config's log.level applies once the config is read, and on every change.
      logLevelFromConfig: args['log-level'] === undefined,
    });
    // Listen for signals before starting, so a stop request during start-up is not lost.
    let stopRequested: (signal: StopSignal) => void = () => undefined;
    const stopped = new Promise<StopSignal>((resolvePromise) => (stopRequested = resolvePromise));
    const onTerm = (): void => stopRequested('SIGTERM');
    const onInt = (): void => stopRequested('SIGINT');
    const onHup = (): void => {
      logger.info({ event: 'signal', signal: 'SIGHUP' }, 'reading the config and resources again');
      daemon.reconcile().then(
        (outcome) => logger.info({ event: 'reloaded', outcome }, `reload: ${outcome}`),
        (error: unknown) => logger.error({ event: 'reconcile_failed', err: error }, 'reload failed'),
      );
    };
    environment.signals.on('SIGTERM', onTerm);
    environment.signals.on('SIGINT', onInt);
    environment.signals.on('SIGHUP', onHup);
    try {
      await daemon.start();
      const signal = await stopped;
      logger.info({ event: 'signal', signal }, 'stopping');
      return 0;
    } finally {
      environment.signals.off('SIGTERM', onTerm);
      environment.signals.off('SIGINT', onInt);
      environment.signals.off('SIGHUP', onHup);
      await daemon.stop();
    }
  },
};
