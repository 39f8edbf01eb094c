// `render()`: the policy maps' contents as readable JSON — what `install` writes into the
// generation not in force before flipping dnsp_pol_active.
import { formatTrustedServer, type DesiredState } from '@dnsplane/core';
import { POLICY_MAP_NAMES } from './encode.js';
import { HOST_INTERFACES, type PolicyTables } from './tables.js';

export function renderPolicyTables(state: DesiredState, tables: PolicyTables): string {
  const document = {
    dataplane: 'ebpf',
    note: `written to the generation not in force, then ${POLICY_MAP_NAMES.active} flips; "${HOST_INTERFACES}" = every node interface except lo and workload interfaces`,
    [POLICY_MAP_NAMES.hooks]: tables.hooks.map((h) => ({
      interface: h.interface,
      tc: h.tcDirection,
      endpoint: h.endpoint,
      direction: h.direction,
      selected: h.selected,
      track: h.track,
      dnsUntracked: h.dnsUntracked,
      host: h.host,
      first: h.first,
      count: h.count,
      policies: h.policies,
    })),
    [POLICY_MAP_NAMES.rules]: tables.rules.map((r) => ({
      slot: r.slot,
      policy: r.policy,
      direction: r.direction,
      rule: r.rule,
      action: r.action,
      ...(r.protocol !== undefined ? { protocol: r.protocol } : {}),
      ...(r.family !== undefined ? { family: r.family } : {}),
      ...(r.action === 'pass' ? { passTarget: r.passTarget } : {}),
      ...nonEmpty('sourcePorts', r.ports.source),
      ...nonEmpty('sourceNotPorts', r.ports.sourceNot),
      ...nonEmpty('destinationPorts', r.ports.destination),
      ...nonEmpty('destinationNotPorts', r.ports.destinationNot),
      ...(r.sourceNets ? { sourceNets: r.sourceNets } : {}),
      ...(r.sourceNotNets ? { sourceNotNets: r.sourceNotNets } : {}),
      ...(r.destinationNets ? { destinationNets: r.destinationNets } : {}),
      ...(r.destinationNotNets ? { destinationNotNets: r.destinationNotNets } : {}),
      ...(r.destinationDomainSet ? { destinationDomainSet: r.destinationDomainSet } : {}),
    })),
    'dnsp_pol_nets4/6': tables.netLists.map((l) => ({ list: l.id, cidrs: l.cidrs })),
    dnsp_domains: state.domainSets.map((s) => ({ id: s.id, name: s.name, patterns: s.patterns.map((p) => p.text) })),
    dnsp_config: {
      trustedServers: state.dns.trustedServers.map(formatTrustedServer),
      minTTL: state.dns.minTTL,
      extraTTL: state.dns.extraTTL,
      maxAddressesPerName: state.dns.maxAddressesPerName,
    },
  };
  return `${JSON.stringify(document, null, 2)}\n`;
}

function nonEmpty(name: string, ranges: readonly { first: number; last: number }[]): Record<string, string[]> {
  return ranges.length === 0 ? {} : { [name]: ranges.map((r) => (r.first === r.last ? String(r.first) : `${r.first}:${r.last}`)) };
}
