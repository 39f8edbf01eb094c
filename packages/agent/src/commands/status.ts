// `dnsplane status`: asks the running daemon over its unix socket.
import { z } from 'zod';
import type { Command } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { DEFAULT_SOCKET_PATH, fetchStatus, type AgentStatus } from '../status-socket.js';
import { describeCounts } from '../desired.js';
import { parseCommandLine } from '../usage.js';

const schema = z.object({
  socket: z.string().min(1, 'needs a path').optional(),
  json: z.boolean().optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const statusCommand: Command = {
  name: 'status',
  summary: 'show the running daemon: dataplane, objects, counters, learned entries',
  help: `Usage: dnsplane status [--socket PATH] [--json]

Asks the running daemon (\`dnsplane run\`) for its status: the active dataplane, the kernel
objects it owns, parser and enforcement counters, and how many learned entries are in force.
Exits 1 when no daemon answers.

Options:
  --socket PATH   status socket (default: $DNSPLANE_SOCKET, else ${DEFAULT_SOCKET_PATH})
  --json          print the status as JSON
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('status', argv, { socket: { type: 'string' }, json: { type: 'boolean' } }, schema);
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    const { environment } = context;
    context.container(args['log-level'] ?? 'warn');
    const status = await fetchStatus(args.socket ?? (environment.env['DNSPLANE_SOCKET'] || DEFAULT_SOCKET_PATH));
    environment.stdout.write(args.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
    return 0;
  },
};

export function formatStatus(status: AgentStatus): string {
  const lines = [
    `dataplane:   ${status.dataplane}`,
    `config:      ${status.configFile}`,
    `pid:         ${status.pid} (since ${status.startedAt})`,
    status.lastApply
      ? `last apply:  ${status.lastApply.at}: ${describeCounts(status.lastApply)}`
      : 'last apply:  never',
    `learned:     ${status.learned}`,
    'objects:',
    ...(status.objects.length === 0 ? ['  (none)'] : status.objects.map((o) => `  ${o}`)),
    'counters:',
    ...(Object.keys(status.counters).length === 0
      ? ['  (none)']
      : Object.entries(status.counters)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, value]) => `  ${name}: ${value}`)),
  ];
  if (status.rejected.length > 0) lines.push('last change rejected:', ...status.rejected.map((p) => `  ${p}`));
  return `${lines.join('\n')}\n`;
}
