// Hearing at once that someone removed the dataplane's kernel objects, so the daemon's drift
// check (Daemon.checkDrift) runs now rather than at its next tick. Only nftables reports it:
// `nft monitor tables` prints `delete table inet <name>` when the table goes, also for each
// table of a `flush ruleset` (Debian's nftables.service on every start and reload). The other
// dataplanes have no such event (legacy iptables has none; tc filters have none per filter):
// the periodic check covers them.
import type { DataplaneKind, DnsplaneConfig } from '@dnsplane/core';
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

/** Whether a line of `nft monitor tables` says that the table `inet <table>` was deleted. */
export function deletesTable(line: string, table: string): boolean {
  const match = /^delete table inet (\S+)$/.exec(line.trim());
  return match?.[1] === table;
}

export const nftMonitorRemovalWatch: RemovalWatchFactory = (kind, config, onRemoved, onError) => {
  if (kind !== 'nftables') return undefined;
  const table = config.nftables.table;
  return monitorLines(['nft', 'monitor', 'tables'], (line) => (deletesTable(line, table) ? onRemoved() : undefined), onError);
};
