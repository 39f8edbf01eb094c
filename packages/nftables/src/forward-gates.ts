// Whether another firewall in the node's namespace could drop untracked DNS answers.
//
// nftables runs every base chain on a hook: our `accept` ends only our chain. An untracked
// answer has ct state `untracked`, so another table's forward chain that admits replies by
// `ct state established,related` and drops the rest (Docker's and ufw's FORWARD policy drop,
// firewalld's final reject) drops it, and the workloads' DNS stops. `untrackDns: auto` untracks
// only while no such gate is there: no other table's base chain on the forward hook with a drop
// policy or any rule (an empty accept chain, as `iptables -L` leaves one, gates nothing), and no
// iptables-legacy filter table (its rules are not visible through nft). Pure but for reading the
// legacy table names, which is injected.
import { readFileSync } from 'node:fs';
import type { NftTableRef } from './nft-model.js';
import type { NftBaseChainRef } from './snapshot.js';

/** The netfilter families a forwarded IP packet meets. */
const IP_FAMILIES = new Set(['ip', 'ip6', 'inet']);

/** Other tables' base chains on the forward hook. */
function othersForward(chains: readonly NftBaseChainRef[], own: NftTableRef): NftBaseChainRef[] {
  return chains.filter((c) => c.hook === 'forward' && IP_FAMILIES.has(c.family) && !(c.family === own.family && c.table === own.name));
}

/**
 * What could drop untracked answers, one line each (empty: nothing). `chains` from a ruleset
 * listing (rule counts known); `legacyTables`: the iptables-legacy table names of the namespace.
 */
export function forwardGates(chains: readonly NftBaseChainRef[], own: NftTableRef, legacyTables: readonly string[]): string[] {
  const gates = othersForward(chains, own)
    .filter((c) => c.policy === 'drop' || (c.rules ?? 1) > 0)
    .map((c) => `nft table ${c.family} ${c.table}: forward chain ${c.name} (policy ${c.policy}${c.rules === undefined ? '' : `, ${c.rules} rules`})`);
  if (legacyTables.includes('filter')) gates.push('an iptables-legacy filter table');
  return gates;
}

/**
 * What the drift check compares with the install's view (a `list chains` listing: no rule
 * counts): other tables' forward base chains with their policies, and the legacy filter table.
 */
export function forwardGateView(chains: readonly NftBaseChainRef[], own: NftTableRef, legacyTables: readonly string[]): string[] {
  return [
    ...othersForward(chains, own).map((c) => `nft table ${c.family} ${c.table}: forward chain ${c.name} (policy ${c.policy})`),
    ...(legacyTables.includes('filter') ? ['an iptables-legacy filter table'] : []),
  ].sort();
}

/** The iptables-legacy tables of this namespace (IPv4 and IPv6): /proc/net/ip{,6}_tables_names. */
export function readLegacyTables(): string[] {
  const names: string[] = [];
  for (const file of ['/proc/net/ip_tables_names', '/proc/net/ip6_tables_names']) {
    try {
      names.push(...readFileSync(file, 'utf8').split('\n').filter((line) => line !== ''));
    } catch {
      // no legacy iptables in this kernel or namespace
    }
  }
  return [...new Set(names)];
}
