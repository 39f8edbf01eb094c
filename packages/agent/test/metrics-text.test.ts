// The status → Prometheus text rendering (pure).
import { describe, expect, it } from 'vitest';
import { renderMetrics } from '../src/metrics-text.js';
import type { AgentStatus } from '../src/status-socket.js';

const status: AgentStatus = {
  pid: 1,
  startedAt: '2026-12-04T00:00:00.000Z',
  configFile: '/etc/dnsplane/dnsplane.yaml',
  dataplane: 'nftables',
  objects: [],
  counters: {
    'policy.allowed': 12,
    'policy.denied': 3,
    'policy.default_deny': 5,
    'policy.default_deny.ep_web_egress': 5,
    'parser.parsed': 10,
    'parser.learned': 6,
    'elements.ds_1a2b_v4': 2,
    rules: 49,
  },
  learned: 4,
  migrations: [],
  lastApply: { at: '2026-12-04T00:00:01.500Z', policies: 2, endpoints: 2, domainSets: 3 },
  rejected: [],
  memory: { rss: 89_000_000, heapUsed: 1, heapTotal: 2, external: 3 },
};

describe('renderMetrics', () => {
  it('renders the policy decisions, the parser counters, learned entries and the rest of status as Prometheus text', () => {
    const lines = renderMetrics(status).split('\n');
    const samples = lines.filter((l) => l !== '' && !l.startsWith('#'));
    expect(samples).toEqual([
      'dnsplane_info{dataplane="nftables"} 1',
      'dnsplane_policy_packets_total{decision="allowed"} 12',
      'dnsplane_policy_packets_total{decision="denied"} 3',
      'dnsplane_policy_packets_total{decision="default_deny"} 5',
      'dnsplane_parser_total{counter="parsed"} 10',
      'dnsplane_parser_total{counter="learned"} 6',
      'dnsplane_learned_entries 4',
      'dnsplane_last_apply_timestamp_seconds 1796342401.5',
      'dnsplane_rejected_change_problems 0',
      'dnsplane_repairs_total 0',
      'dnsplane_resident_memory_bytes 89000000',
      'dnsplane_dataplane_value{name="policy.default_deny.ep_web_egress"} 5',
      'dnsplane_dataplane_value{name="elements.ds_1a2b_v4"} 2',
      'dnsplane_dataplane_value{name="rules"} 49',
    ]);
    // Each family: HELP and TYPE once, before its samples.
    expect(lines).toContain('# TYPE dnsplane_policy_packets_total counter');
    expect(lines).toContain('# TYPE dnsplane_learned_entries gauge');
    expect(lines.filter((l) => l.startsWith('# TYPE ')).length).toBe(9);
    expect(renderMetrics(status).endsWith('\n')).toBe(true);
  });

  it('leaves out families it has nothing for (a brief status), and escapes label values', () => {
    const text = renderMetrics({ ...status, dataplane: 'a"b\\c\nd', counters: {}, learned: undefined, memory: undefined, lastApply: undefined });
    expect(text).toContain('dnsplane_info{dataplane="a\\"b\\\\c\\nd"} 1');
    expect(text).not.toContain('dnsplane_policy_packets_total');
    expect(text).not.toContain('dnsplane_learned_entries');
    expect(text).not.toContain('dnsplane_dataplane_value');
  });
});
