// Hearing at once that someone removed the dataplane's kernel objects, so the daemon's drift
// check (Daemon.checkDrift) runs now rather than at its next tick. What the kernel reports, per
// dataplane (each a child process that prints one line per event):
// - nftables: `nft monitor destroy tables` prints `delete table inet <name>` when the table goes, also
//   for each table of a `flush ruleset` (Debian's nftables.service on every start and reload);
//   with untrackDns auto, `nft monitor chains` prints other tables' chains as they come, change
//   and go, and `nft monitor new rules` the rules added to them (another firewall's forward or
//   nat chain decides whether DNS may stay untracked);
//   and `tc monitor` prints `deleted filter dev <if> ingress … pref <n>` for each deleted tc
//   filter and `deleted qdisc clsact … dev <if>` when a CNI or an operator re-creates the
//   qdisc (which takes the parser and the membership mark with it);
// - ebpf: `tc monitor`, for its parser and policy filters (a deleted policy filter leaves the
//   endpoint's traffic unfiltered until the repair);
// - iptables on the nft backend: `nft monitor destroy` prints each rule, chain and table that
//   goes from the `filter` tables `iptables-nft` writes (`iptables -F FORWARD` prints one
//   `delete rule ip filter FORWARD handle N` per rule). The legacy backend reports nothing:
//   the periodic check covers it.
// A line that is ours only maybe (our own re-apply deletes rules in our chains too) costs one
// drift check that finds nothing missing; the daemon runs one check for a burst of lines.
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { DNSPLANE_TC_FILTERS } from '@dnsplane/bpf-parser';
import type { DataplaneKind, DnsplaneConfig } from '@dnsplane/core';
import { PARSER_TC_FILTER, POLICY_TC_FILTER } from '@dnsplane/ebpf';
import { CHAIN_PREFIX } from '@dnsplane/iptables';
import { monitorLines } from './line-monitor.js';

/**
 * Starts a watch for `kind` with `config` (undefined: this dataplane has none). `onRemoved` is
 * called when objects of it went; `onError` once if the watch cannot run or ends by itself.
 */
export type RemovalWatchFactory = (
  kind: DataplaneKind,
  config: DnsplaneConfig,
  onRemoved: () => void,
  onError: (error: Error) => void,
) => { close(): void } | undefined;

/** Whether a line of `nft monitor destroy tables` says that the table `inet <table>` was deleted. */
export function deletesTable(line: string, table: string): boolean {
  const match = /^delete table inet (\S+)$/.exec(line.trim());
  return match?.[1] === table;
}

/**
 * Whether a line of `tc monitor` says that a filter at one of `priorities` was deleted, or a
 * clsact qdisc (with every filter on it). An interface that goes away prints neither (only
 * `deleted chain`): the interface watch handles that.
 */
export function deletesTcFilter(line: string, priorities: ReadonlySet<number>): boolean {
  const text = line.trim();
  if (/^deleted qdisc clsact\b/.test(text)) return true;
  const match = /^deleted filter dev \S+ (?:ingress|egress) .*\bpref (\d+)\b/.exec(text);
  return match !== null && priorities.has(Number(match[1]));
}

/**
 * Whether a line of `nft monitor chains` may change what untrackDns auto decided: another
 * table's chain on the forward hook or of type nat added or changed (its policy), or another
 * table's chain deleted (the line does not say its hook). The check it triggers compares those
 * chains with the install's view and installs again only when they differ.
 */
export function changesForwardGate(line: string, table: string): boolean {
  const match = /^(add|delete) chain (ip|ip6|inet) (\S+) \S+(.*)$/.exec(line.trim());
  if (match === null) return false;
  const [, action, family, name, rest = ''] = match;
  if (family === 'inet' && name === table) return false;
  return action === 'delete' || /\bhook forward\b/.test(rest) || /\btype nat\b/.test(rest);
}

/**
 * Whether a line of `nft monitor new rules` adds a rule to another table's chain (`ip`, `ip6`,
 * `inet`): one that was empty at the install may now drop untracked answers or NAT queries.
 * The check counts the rules of those chains only.
 */
export function addsRuleElsewhere(line: string, table: string): boolean {
  const match = /^add rule (ip|ip6|inet) (\S+) \S+ /.exec(line.trim());
  if (match === null) return false;
  const [, family, name] = match;
  return !(family === 'inet' && name === table);
}

/** The built-in chains of the filter table our jumps hang from. */
const BUILT_IN_CHAINS = new Set(['INPUT', 'FORWARD', 'OUTPUT']);

/**
 * Whether a line of `nft monitor destroy` says that a rule, chain or table iptables-nft writes
 * for us went: a rule of one of our chains or of a built-in one (a jump of ours, maybe), such a
 * chain, or a whole `filter` table.
 */
export function deletesIptablesNftObject(line: string): boolean {
  const match = /^delete (rule|chain|table) (?:ip|ip6) filter(?: (\S+))?(?:\s|$)/.exec(line.trim());
  if (match === null) return false;
  const [, object, chain] = match;
  if (object === 'table') return chain === undefined;
  if (chain === undefined) return false;
  return chain.startsWith(CHAIN_PREFIX) || BUILT_IN_CHAINS.has(chain);
}

/** Whether `command` is an executable file in one of the folders of `pathVariable`. */
export function onPath(command: string, pathVariable: string | undefined): boolean {
  return (pathVariable ?? '').split(':').some((folder) => {
    if (folder === '') return false;
    try {
      accessSync(join(folder, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

const NFTABLES_TC_PRIORITIES = new Set(Object.values(DNSPLANE_TC_FILTERS).map((filter) => filter.priority));
const EBPF_TC_PRIORITIES = new Set([PARSER_TC_FILTER.priority, POLICY_TC_FILTER.priority]);

/** One watch of several monitors: closes them together; the first that fails fails the watch. */
function watchAll(starts: ReadonlyArray<(onError: (error: Error) => void) => { close(): void }>, onError: (error: Error) => void): { close(): void } {
  const monitors: Array<{ close(): void }> = [];
  let closed = false;
  const close = (): void => {
    closed = true;
    for (const monitor of monitors) monitor.close();
  };
  for (const start of starts) {
    monitors.push(
      start((error) => {
        if (closed) return;
        close();
        onError(error);
      }),
    );
  }
  return { close };
}

export const kernelRemovalWatch: RemovalWatchFactory = (kind, config, onRemoved, onError) => {
  /** A monitor whose lines that `removes` accepts call onRemoved. */
  const monitor = (argv: readonly string[], removes: (line: string) => boolean) => (fail: (error: Error) => void) =>
    monitorLines(argv, (line) => (removes(line) ? onRemoved() : undefined), fail);
  const tcFilters = (priorities: ReadonlySet<number>) => monitor(['tc', 'monitor'], (line) => deletesTcFilter(line, priorities));
  if (kind === 'nftables') {
    const table = config.nftables.table;
    const tables = monitor(['nft', 'monitor', 'destroy', 'tables'], (line) => deletesTable(line, table));
    // untrackDns auto: another firewall's forward chain coming (Docker, firewalld starting after
    // us) would drop untracked answers; the check then decides again (missingObjects).
    const gates =
      config.nftables.untrackDns === 'auto'
        ? [
            monitor(['nft', 'monitor', 'chains'], (line) => changesForwardGate(line, table)),
            monitor(['nft', 'monitor', 'new', 'rules'], (line) => addsRuleElsewhere(line, table)),
          ]
        : [];
    return watchAll([tables, tcFilters(NFTABLES_TC_PRIORITIES), ...gates], onError);
  }
  if (kind === 'ebpf') return watchAll([tcFilters(EBPF_TC_PRIORITIES)], onError);
  if (config.iptables.backend === 'legacy') return undefined;
  // `auto` on a legacy-only host (no nft tool): nothing to watch, rather than a failing monitor
  // warned about and retried forever. `auto` on a legacy host with nft: the nft events are
  // someone else's; a check finds nothing missing.
  if (config.iptables.backend === 'auto' && !onPath('nft', process.env['PATH'])) return undefined;
  return watchAll([monitor(['nft', 'monitor', 'destroy'], deletesIptablesNftObject)], onError);
};
