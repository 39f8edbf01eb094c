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
  learned: z.boolean().optional(),
  brief: z.boolean().optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const statusCommand: Command = {
  name: 'status',
  summary: 'show the running daemon: dataplane, objects, counters, learned entries',
  help: `Usage: dnsplane status [--socket PATH] [--json] [--learned | --brief]

Asks the running daemon (\`dnsplane run\`) for its status: the active dataplane, the kernel
objects it owns, parser and enforcement counters, how many learned entries are in force, the
state file (and whether one was set aside as corrupt) and the migrations done since start.
Exits 1 when no daemon answers.

Options:
  --socket PATH   status socket (default: $DNSPLANE_SOCKET, else ${DEFAULT_SOCKET_PATH})
  --json          print the status as JSON
  --learned       also list every learned entry in force (set, address, expiry, name)
  --brief         the daemon's own state only (no kernel objects, counters or learned count):
                  answers at once, also during an install or a restore
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('status', argv, { socket: { type: 'string' }, json: { type: 'boolean' }, learned: { type: 'boolean' }, brief: { type: 'boolean' } }, schema);
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    const { environment } = context;
    context.container(args['log-level'] ?? 'warn');
    const status = await fetchStatus(args.socket ?? (environment.env['DNSPLANE_SOCKET'] || DEFAULT_SOCKET_PATH), 30_000, {
      learned: args.learned === true,
      brief: args.brief === true,
    });
    environment.stdout.write(args.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
    return 0;
  },
};

export function formatStatus(status: AgentStatus): string {
  const lines = [
    `dataplane:   ${status.dataplane}${status.configuredDataplane === undefined ? '' : ` (the config says ${status.configuredDataplane}: a restart migrates back)`}`,
    `config:      ${status.configFile}`,
    `pid:         ${status.pid} (since ${status.startedAt})`,
    status.lastApply
      ? `last apply:  ${status.lastApply.at}: ${describeCounts(status.lastApply)}`
      : 'last apply:  never',
    `learned:     ${status.learned ?? '(not read in a brief status)'}`,
    ...(status.memory === undefined ? [] : [`memory:      ${describeMemory(status.memory)}`]),
    ...(status.stateFile === undefined ? [] : [`state file:  ${describeStateFile(status.stateFile)}`]),
    ...(status.repairs === undefined ? [] : [`repairs:     ${describeRepairs(status.repairs)}`]),
    ...(status.watches === undefined ? [] : [`watches:     interfaces ${status.watches.interfaces}, removals ${status.watches.removals}`]),
    ...(status.metrics === undefined ? [] : [`metrics:     http://${status.metrics.listen}/metrics (${status.metrics.state})`]),
    ...status.migrations.map((m) => `migrated:    ${m.from} -> ${m.to} at ${m.at} (${m.imported} learned carried over)${m.removeFailed === undefined ? '' : `; ${m.from} not fully removed: ${m.removeFailed}`}`),
    'objects:',
    ...(status.objects.length === 0 ? ['  (none)'] : status.objects.map((o) => `  ${o}`)),
    'counters:',
    ...(Object.keys(status.counters).length === 0
      ? ['  (none)']
      : Object.entries(status.counters)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, value]) => `  ${name}: ${value}`)),
  ];
  if (status.learnedEntries !== undefined) {
    lines.push('learned entries:');
    if (status.learnedEntries.length === 0) lines.push('  (none)');
    for (const e of status.learnedEntries) {
      lines.push(`  set ${e.setId} ${e.address} until ${e.expiresAt}${e.name === undefined ? '' : ` (${e.name})`}`);
    }
  }
  if (status.rejected.length > 0) lines.push('last change rejected:', ...status.rejected.map((p) => `  ${p}`));
  return `${lines.join('\n')}\n`;
}

function describeRepairs(repairs: NonNullable<AgentStatus['repairs']>): string {
  const what = repairs.lastMissing.join(', ');
  return `${repairs.count} (objects someone else removed, installed again); last at ${repairs.lastAt}${repairs.lastFailed ? ' FAILED (retried at the next check)' : ''}: ${what}`;
}

function describeMemory(memory: NonNullable<AgentStatus['memory']>): string {
  const mib = (bytes: number): string => (bytes / 1_048_576).toFixed(1);
  return `${mib(memory.rss)} MiB resident; V8 heap ${mib(memory.heapUsed)} MiB in use of ${mib(memory.heapTotal)} reserved; ${mib(memory.external)} MiB outside it`;
}

function describeStateFile(report: NonNullable<AgentStatus['stateFile']>): string {
  const parts = [report.path];
  if (report.loaded !== undefined) parts.push(`${report.loaded} loaded at start`);
  if (report.saved !== undefined) parts.push(`${report.saved} saved at ${report.savedAt ?? '?'}`);
  if (report.problem !== undefined) parts.push(`CORRUPT at start, set aside as ${report.setAside ?? '(could not move)'}: ${report.problem.split('\n')[0] ?? ''}`);
  return parts.join('; ');
}
