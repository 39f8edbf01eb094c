// The daemon's status as Prometheus metrics (text exposition format 0.0.4): what `GET /metrics`
// on `metrics.listen` returns. Pure: one AgentStatus in, the page out. The counters are the
// ones `dnsplane status` shows, under the names every dataplane uses (`policy.*`, `parser.*`);
// the dataplane's own figures follow as one gauge with a `name` label.
import { PARSER_COUNTER_PREFIX, POLICY_COUNTERS } from '@dnsplane/core';
import type { AgentStatus } from './status-socket.js';

/** The content type of the page (Prometheus text format 0.0.4). */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** What the policies decided: status counter → the `decision` label. */
const POLICY_DECISIONS: ReadonlyArray<readonly [string, string]> = [
  [POLICY_COUNTERS.allowed, 'allowed'],
  [POLICY_COUNTERS.denied, 'denied'],
  [POLICY_COUNTERS.defaultDeny, 'default_deny'],
];
const PARSER_PREFIX = PARSER_COUNTER_PREFIX;

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly samples: ReadonlyArray<{ readonly labels?: Readonly<Record<string, string>>; readonly value: number }>;
}

export function renderMetrics(status: AgentStatus): string {
  const counters = status.counters;
  const policyNames = new Set(POLICY_DECISIONS.map(([name]) => name));
  const families: Family[] = [
    {
      name: 'dnsplane_info',
      help: 'The running agent: the dataplane in force.',
      type: 'gauge',
      samples: [{ labels: { dataplane: status.dataplane }, value: 1 }],
    },
    {
      name: 'dnsplane_policy_packets_total',
      help: 'Packets the policies decided: allowed by an Allow rule, denied by a Deny rule, denied by default (no rule decided). Established traffic is not counted; a rewritten nft chain or iptables chain starts again from zero.',
      type: 'counter',
      samples: POLICY_DECISIONS.flatMap(([name, decision]) =>
        counters[name] === undefined ? [] : [{ labels: { decision }, value: counters[name] }],
      ),
    },
    {
      name: 'dnsplane_parser_total',
      help: "The DNS parser's counters (summed over CPUs): queries recorded, responses parsed, addresses learned, and why responses were not used.",
      type: 'counter',
      samples: Object.entries(counters)
        .filter(([name]) => name.startsWith(PARSER_PREFIX))
        .map(([name, value]) => ({ labels: { counter: name.slice(PARSER_PREFIX.length) }, value })),
    },
    {
      name: 'dnsplane_learned_entries',
      help: 'Learned (domain set, address) entries in force.',
      type: 'gauge',
      samples: status.learned === undefined ? [] : [{ value: status.learned }],
    },
    {
      name: 'dnsplane_last_apply_timestamp_seconds',
      help: 'When the state in force was applied (Unix time).',
      type: 'gauge',
      samples: status.lastApply === undefined ? [] : [{ value: Date.parse(status.lastApply.at) / 1000 }],
    },
    {
      name: 'dnsplane_rejected_change_problems',
      help: 'Problems of the last rejected config or policy change (0: the last change applied).',
      type: 'gauge',
      samples: [{ value: status.rejected.length }],
    },
    {
      name: 'dnsplane_repairs_total',
      help: 'Times the daemon installed its kernel objects again after someone else removed them.',
      type: 'counter',
      samples: [{ value: status.repairs?.count ?? 0 }],
    },
    {
      name: 'dnsplane_resident_memory_bytes',
      help: 'Resident memory of the daemon process.',
      type: 'gauge',
      samples: status.memory === undefined ? [] : [{ value: status.memory.rss }],
    },
    {
      name: 'dnsplane_dataplane_value',
      help: "The dataplane's own figures in status (objects, elements per set, per-chain counts), by name.",
      type: 'gauge',
      samples: Object.entries(counters)
        .filter(([name]) => !name.startsWith(PARSER_PREFIX) && !policyNames.has(name))
        .map(([name, value]) => ({ labels: { name }, value })),
    },
  ];
  const lines: string[] = [];
  for (const family of families) {
    if (family.samples.length === 0) continue;
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) lines.push(`${family.name}${labelText(sample.labels)} ${formatValue(sample.value)}`);
  }
  return `${lines.join('\n')}\n`;
}

function labelText(labels: Readonly<Record<string, string>> | undefined): string {
  if (labels === undefined) return '';
  const pairs = Object.entries(labels).map(([key, value]) => `${key}="${escapeLabelValue(value)}"`);
  return `{${pairs.join(',')}}`;
}

/** Label values escape backslash, double quote and line feed. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}
