// Reads what `iptables-save -t <table>` prints about our objects: our chains, their rules,
// and the rules in built-in chains that jump to them. Pure parsing of tool output.
import { ALLOW_CHAIN } from './compile.js';
import { CHAIN_PREFIX } from './model.js';
import type { Jump, Table, TableName } from './model.js';
import type { TableChanges } from './render.js';

const BUILTIN = new Set(['INPUT', 'FORWARD', 'OUTPUT', 'PREROUTING', 'POSTROUTING']);

export interface SavedJump {
  readonly from: string;
  readonly to: string;
  /** The rule as iptables-save prints it, without the leading `-A ` (usable after `-D `). */
  readonly spec: string;
}

export interface SavedTable {
  readonly name: TableName;
  /** Our chains, in the order iptables-save lists them. */
  readonly chains: readonly string[];
  /** `-A <chain> …` lines of our chains, as printed. */
  readonly rules: readonly string[];
  /** Rules in built-in chains whose target is one of our chains. */
  readonly jumps: readonly SavedJump[];
  /** Rules (`-A` lines) in the table outside our chains: other people's. */
  readonly foreignRules: number;
}

/** Parses the block of `table` in iptables-save output; an absent table is empty. */
export function parseSavedTable(output: string, table: TableName): SavedTable {
  const chains: string[] = [];
  const rules: string[] = [];
  const jumps: SavedJump[] = [];
  let foreignRules = 0;
  let inTable = false;
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      inTable = line === `*${table}`;
      continue;
    }
    if (!inTable || line === '' || line.startsWith('#')) continue;
    if (line === 'COMMIT') {
      inTable = false;
      continue;
    }
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0] ?? '';
      if (name.startsWith(CHAIN_PREFIX)) chains.push(name);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const spec = line.slice(3);
    const chain = spec.split(' ')[0] ?? '';
    if (chain.startsWith(CHAIN_PREFIX)) {
      rules.push(line);
      continue;
    }
    const target = /(?:^| )-[jg] (\S+)/.exec(spec)?.[1];
    if (target !== undefined && target.startsWith(CHAIN_PREFIX) && BUILTIN.has(chain)) {
      jumps.push({ from: chain, to: target, spec });
    } else {
      foreignRules += 1;
    }
  }
  return { name: table, chains, rules, jumps, foreignRules };
}

/** The exact text of the plain jump rule for `jump`, as iptables-save prints it. */
export function jumpSpec(jump: Jump): string {
  return `${jump.from} -j ${jump.to}`;
}

/**
 * What must change so the kernel table holds `table` and nothing else of ours: missing jumps
 * inserted, duplicate or unknown jumps deleted, chains we no longer need deleted.
 */
export function tableChanges(table: Table, saved: SavedTable): TableChanges {
  const wanted = new Map(table.jumps.map((j) => [jumpSpec(j), j]));
  const seen = new Set<string>();
  const deleteRules: string[] = [];
  for (const jump of saved.jumps) {
    if (wanted.has(jump.spec) && !seen.has(jump.spec)) seen.add(jump.spec);
    else deleteRules.push(jump.spec);
  }
  const insertJumps = [...wanted].filter(([spec]) => !seen.has(spec)).map(([, jump]) => jump);
  const keep = new Set(table.chains.map((c) => c.name));
  const deleteChains = saved.chains.filter((c) => !keep.has(c));
  return { insertJumps, deleteRules, deleteChains };
}

/**
 * Restore input that turns `now` back into `before` (both read with iptables-save): our
 * chains as they were, the jumps as they were, chains created since then deleted. With an
 * empty `before` it removes everything of ours.
 */
export function rollbackInput(before: SavedTable, now: SavedTable): string {
  const keep = new Set(before.chains);
  const created = now.chains.filter((c) => !keep.has(c));
  const lines = [`*${before.name}`];
  for (const chain of [...before.chains, ...created]) lines.push(`:${chain} - [0:0]`);
  for (const jump of now.jumps) lines.push(`-D ${jump.spec}`);
  lines.push(...before.rules);
  for (const jump of [...before.jumps].reverse()) lines.push(`-I ${jump.spec.replace(/^(\S+) /, '$1 1 ')}`);
  for (const chain of created) lines.push(`-X ${chain}`);
  lines.push('COMMIT');
  return lines.join('\n') + '\n';
}

/** The `[packets:bytes] -A <chain> <spec>` lines of `iptables-save -c` output. */
function countedRules(countedOutput: string): Array<{ packets: number; chain: string; spec: string }> {
  const rules: Array<{ packets: number; chain: string; spec: string }> = [];
  for (const line of countedOutput.split('\n')) {
    const m = /^\[(\d+):\d+\] -A (\S+) (.*)$/.exec(line.trim());
    if (m) rules.push({ packets: Number(m[1]), chain: m[2] ?? '', spec: m[3] ?? '' });
  }
  return rules;
}

const DROP = /(^| )-j DROP$/;

/**
 * What the policies decided, from `iptables-save -c`: packets through the allow chain (every
 * Allow rule jumps there), packets the Deny rules of the policy chains dropped, and packets the
 * endpoint chains' final rule (a bare `-j DROP`) dropped — the default deny. The same three
 * figures as `policy.allowed` / `policy.denied` / `policy.default_deny` on every dataplane.
 */
export function policyPackets(countedOutput: string): { allowed: number; denied: number; defaultDeny: number } {
  const packets = { allowed: 0, denied: 0, defaultDeny: 0 };
  const policyChain = new RegExp(`^${CHAIN_PREFIX}(PI|PE)-`);
  const endpointChain = new RegExp(`^${CHAIN_PREFIX}(TW|FW|TH|FH)-`);
  for (const rule of countedRules(countedOutput)) {
    if (rule.chain === ALLOW_CHAIN) packets.allowed += rule.packets;
    else if (policyChain.test(rule.chain) && DROP.test(rule.spec)) packets.denied += rule.packets;
    else if (endpointChain.test(rule.chain) && rule.spec === '-j DROP') packets.defaultDeny += rule.packets;
  }
  return packets;
}

/**
 * Packets our chains dropped, from `iptables-save -c` output: the sum over DROP rules of
 * DNSPLANE- chains.
 */
export function droppedPackets(countedOutput: string): number {
  return countedRules(countedOutput)
    .filter((rule) => rule.chain.startsWith(CHAIN_PREFIX) && DROP.test(rule.spec))
    .reduce((total, rule) => total + rule.packets, 0);
}
