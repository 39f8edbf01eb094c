// The one renderer: a Ruleset (plus what install found in the kernel) → iptables-restore /
// ip6tables-restore input, to be applied with `--noflush`. Declaring `:CHAIN - [0:0]` creates
// or flushes only that chain, so nobody else's chains or rules are touched; the whole table
// block is applied atomically at COMMIT.
import type { IpFamily } from '@dnsplane/core';
import type { Chain, Jump, Match, Rule, Ruleset, Table, TableName, Target } from './model.js';

/** What install learned from `iptables-save` for one table; all empty for a fresh host. */
export interface TableChanges {
  /** Jumps to insert (missing from the built-in chains). */
  readonly insertJumps: readonly Jump[];
  /** Rule specs to delete from built-in chains, as printed by iptables-save without `-A `. */
  readonly deleteRules: readonly string[];
  /** Our chains present in the kernel but not in the ruleset: flushed, then deleted. */
  readonly deleteChains: readonly string[];
}

/** The restore input for a host that holds none of our objects yet (what `render` shows). */
export function renderFresh(ruleset: Ruleset): string {
  return renderRuleset(ruleset, (table) => ({ insertJumps: table.jumps, deleteRules: [], deleteChains: [] }));
}

export function renderRuleset(ruleset: Ruleset, changesFor: (table: Table) => TableChanges): string {
  return ruleset.tables.map((table) => renderTable(table, changesFor(table))).join('');
}

export function renderTable(table: Table, changes: TableChanges): string {
  const lines: string[] = [`*${table.name}`];
  for (const chain of table.chains) lines.push(`:${chain.name} - [0:0]`);
  for (const chain of changes.deleteChains) lines.push(`:${chain} - [0:0]`);
  for (const spec of changes.deleteRules) lines.push(`-D ${spec}`);
  for (const chain of table.chains) lines.push(...renderChain(chain));
  for (const jump of changes.insertJumps) lines.push(`-I ${jump.from} 1 -j ${jump.to}`);
  for (const chain of changes.deleteChains) lines.push(`-X ${chain}`);
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

/** Restore input that deletes the given jump rules and chains of one table. */
export function renderRemoval(table: TableName, deleteRules: readonly string[], chains: readonly string[]): string {
  const lines = [`*${table}`];
  for (const chain of chains) lines.push(`:${chain} - [0:0]`);
  for (const spec of deleteRules) lines.push(`-D ${spec}`);
  for (const chain of chains) lines.push(`-X ${chain}`);
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

export function renderChain(chain: Chain): string[] {
  return chain.rules.map((rule) => `-A ${chain.name} ${renderRule(rule)}`);
}

export function renderRule(rule: Rule): string {
  return [...rule.matches.map(renderMatch), renderTarget(rule.target)].filter((part) => part !== '').join(' ');
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  33: 'dccp',
  58: 'ipv6-icmp',
  132: 'sctp',
  136: 'udplite',
};

function not(negate: boolean | undefined): string {
  return negate ? '! ' : '';
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Double-quoted for the restore parser; the values we quote never hold `"` or `\`. */
function quote(text: string): string {
  if (/["\\\n]/.test(text)) throw new Error(`cannot quote ${JSON.stringify(text)} for iptables-restore`);
  return `"${text}"`;
}

export function renderMatch(match: Match): string {
  switch (match.kind) {
    case 'protocol':
      return `-p ${PROTOCOL_NAMES[match.protocol] ?? String(match.protocol)}`;
    case 'inInterface':
      return `${not(match.negate)}-i ${match.name}`;
    case 'outInterface':
      return `${not(match.negate)}-o ${match.name}`;
    case 'address':
      return `${not(match.negate)}${match.side === 'source' ? '-s' : '-d'} ${match.cidr}`;
    case 'ports': {
      const list = match.ranges.map((r) => (r.first === r.last ? `${r.first}` : `${r.first}:${r.last}`)).join(',');
      return `-m multiport ${not(match.negate)}${match.side === 'source' ? '--sports' : '--dports'} ${list}`;
    }
    case 'conntrack':
      return `-m conntrack --ctstate ${match.states.join(',')}`;
    case 'icmpv6Type':
      return `-m icmp6 --icmpv6-type ${match.type}`;
    case 'mark':
      return `-m mark --mark ${hex(match.value)}/${hex(match.mask)}`;
    case 'bpfPinned':
      if (!/^\/[\w./-]+$/.test(match.path)) throw new Error(`pin path ${JSON.stringify(match.path)} must be absolute, without spaces or quotes`);
      return `-m bpf --object-pinned ${match.path}`;
  }
}

export function renderTarget(target: Target): string {
  switch (target.kind) {
    case 'none':
      return '';
    case 'accept':
      return '-j ACCEPT';
    case 'drop':
      return '-j DROP';
    case 'return':
      return '-j RETURN';
    case 'jump':
      return `-j ${target.chain}`;
    case 'goto':
      return `-g ${target.chain}`;
    case 'log':
      return `-j LOG --log-prefix ${quote(target.prefix)}`;
    case 'setMark':
      return `-j MARK --set-xmark ${hex(target.value)}/${hex(target.mask)}`;
  }
}

/** Label for the two restore inputs in `render` output (comment lines, ignored by restore). */
export function restoreLabel(family: IpFamily): string {
  return family === 4 ? '# iptables-restore --noflush (IPv4)' : '# ip6tables-restore --noflush (IPv6)';
}
