// Whether another firewall in the node's namespace could break untracked DNS.
//
// nftables runs every base chain on a hook: our `accept` ends only our chain. An untracked
// answer has ct state `untracked`, so another table's forward chain that admits replies by
// `ct state established,related` and drops the rest (Docker's and ufw's FORWARD policy drop,
// firewalld's final reject) drops it, and the workloads' DNS stops. And an untracked packet is
// not NATed: a query that another table masquerades on its way out would leave with the
// workload's own address. `untrackDns: auto` untracks only while neither can happen, as far as
// nft shows: no other table's base chain on the forward hook with a drop policy or any rule (an
// empty accept chain, as `iptables -L` leaves one, gates nothing), no other table's nat chain
// with a rule, and no iptables-legacy filter or nat table (their rules are not visible through
// nft). Pure but for reading the legacy table names, which is injected.
import { readFileSync } from 'node:fs';
import type { NftTableRef } from './nft-model.js';
import type { NftBaseChainRef } from './snapshot.js';

/** The netfilter families a forwarded IP packet meets. */
const IP_FAMILIES = new Set(['ip', 'ip6', 'inet']);

/** iptables-legacy tables whose rules could drop or translate forwarded DNS. */
const LEGACY_GATES = ['filter', 'nat'];

/** Other tables' base chains that could gate: on the forward hook, or of type nat. */
function othersGating(chains: readonly NftBaseChainRef[], own: NftTableRef): NftBaseChainRef[] {
  return chains.filter(
    (c) => IP_FAMILIES.has(c.family) && !(c.family === own.family && c.table === own.name) && (c.hook === 'forward' || c.type === 'nat'),
  );
}

const describeChain = (c: NftBaseChainRef): string => `nft table ${c.family} ${c.table}: ${c.type} chain ${c.name} (${c.hook}, policy ${c.policy}`;

/**
 * What could drop or translate untracked DNS, one line each (empty: nothing). `chains` from a
 * ruleset listing (rule counts known); `legacyTables`: the namespace's iptables-legacy tables.
 */
export function forwardGates(chains: readonly NftBaseChainRef[], own: NftTableRef, legacyTables: readonly string[]): string[] {
  const gates = othersGating(chains, own)
    .filter((c) => (c.type === 'nat' ? (c.rules ?? 1) > 0 : c.policy === 'drop' || (c.rules ?? 1) > 0))
    .map((c) => `${describeChain(c)}${c.rules === undefined ? '' : `, ${c.rules} rules`})`);
  for (const table of LEGACY_GATES) if (legacyTables.includes(table)) gates.push(`an iptables-legacy ${table} table`);
  return gates;
}

/**
 * What the drift check compares with the install's view (a `list chains` listing: no rule
 * counts): the other tables' chains that could gate, with their policies, and the legacy tables.
 */
export function forwardGateView(chains: readonly NftBaseChainRef[], own: NftTableRef, legacyTables: readonly string[]): string[] {
  return [
    ...othersGating(chains, own).map((c) => `${describeChain(c)})`),
    ...LEGACY_GATES.filter((table) => legacyTables.includes(table)).map((table) => `an iptables-legacy ${table} table`),
  ].sort();
}

/**
 * The other tables' chains that are no gate only because they are empty (accept policy, no
 * rule): a rule added later would make them one without changing `list chains`, so the drift
 * check counts their rules (one `list chain` each; usually none or one, as `iptables -L` leaves).
 */
export function quietGateChains(chains: readonly NftBaseChainRef[], own: NftTableRef): NftBaseChainRef[] {
  return othersGating(chains, own).filter((c) => c.policy === 'accept' && c.rules === 0);
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
