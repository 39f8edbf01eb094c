// `dnsplane migrate --to KIND`: asks the running daemon to switch dataplanes, make before
// break (the new dataplane is installed, given the learned state and its parser before the old
// one is removed). The config's `dataplane:` is not edited: change it too, or the next restart
// migrates back to what the config says.
import { z } from 'zod';
import type { Command } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { DEFAULT_SOCKET_PATH, requestMigration } from '../status-socket.js';
import { parseCommandLine, UsageError } from '../usage.js';
import { dataplaneSchema } from './apply.js';

const schema = z.object({
  to: dataplaneSchema,
  socket: z.string().min(1, 'needs a path').optional(),
  json: z.boolean().optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'switch the running daemon to another dataplane, make before break',
  help: `Usage: dnsplane migrate --to KIND [--socket PATH] [--json]

Asks the running daemon to move to dataplane KIND (nftables, iptables, ebpf): the new
dataplane gets the desired state, every learned entry still in force and its DNS parser
before the old one is removed, so no allowed connection is dropped and nothing already
learned has to be resolved again. Exits 1 when the migration fails (the old dataplane then
stays in force) or no daemon answers.

The config file is not edited: set \`dataplane: KIND\` there as well, or the next restart of the
daemon migrates back to what the config says.

Options:
  --to KIND       nftables | iptables | ebpf
  --socket PATH   status socket (default: $DNSPLANE_SOCKET, else ${DEFAULT_SOCKET_PATH})
  --json          print the migration report and the new status as JSON
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('migrate', argv, { to: { type: 'string' }, socket: { type: 'string' }, json: { type: 'boolean' } }, schema.partial({ to: true }));
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    if (args.to === undefined) throw new UsageError(`dnsplane migrate: --to: needs a dataplane (${dataplaneSchema.options.join(', ')})`, 'migrate');
    const parsed = { ...args, to: args.to };
    const { environment } = context;
    context.container(args['log-level'] ?? 'warn');
    const answer = await requestMigration(parsed.socket ?? (environment.env['DNSPLANE_SOCKET'] || DEFAULT_SOCKET_PATH), parsed.to);
    if (parsed.json) environment.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    else if (answer.migrated === null) environment.stdout.write(`already on ${parsed.to}; nothing to do\n`);
    else {
      const m = answer.migrated;
      environment.stdout.write(
        `migrated from ${m.from} to ${m.to} at ${m.at}; ${m.imported} learned entr${m.imported === 1 ? 'y' : 'ies'} carried over\n` +
          (m.removeFailed === undefined ? '' : `warning: ${m.from} was not removed completely (${m.removeFailed}); run \`dnsplane uninstall\` after stopping the daemon, or retry\n`),
      );
    }
    return 0;
  },
};
