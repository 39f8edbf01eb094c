// Where the tc dataplanes (nftables, ebpf) attach the DNS parser: one rule, used by both.
//
// - tc ingress of every watched interface: answers (and queries) coming into the node.
// - tc egress of the watched interfaces that are not an endpoint's: what the node itself sends
//   (its own queries to an upstream server); of the endpoints' too while a trusted server is one
//   of the node's own, non-loopback addresses (a node-local cache answers workloads there).
// - lo: ingress only, never egress — a packet on lo passes lo's egress and then its ingress, so
//   one hook sees it once. Watched when listed in dns.interfaces or while any trusted server is
//   on the node (the node's own lookups through it travel over lo and nowhere else); the
//   default "every interface" leaves lo out otherwise.
import type { DnsSettings } from '@dnsplane/core';
import { isLoopbackAddress, trustedServersOnNode } from './node-resolver.js';

export type ParserHookDirection = 'ingress' | 'egress';

export interface ParserHook {
  readonly ifname: string;
  readonly direction: ParserHookDirection;
}

export interface ParserHookInput {
  readonly dns: Pick<DnsSettings, 'trustedServers' | 'interfaces'>;
  /** The interfaces present in the node's namespace, by name. */
  readonly interfaces: readonly string[];
  /** The host-side interfaces of the workload endpoints. */
  readonly endpointInterfaces: ReadonlySet<string>;
  /** The node's own addresses, canonical text (nodeAddresses()). */
  readonly addresses: ReadonlySet<string>;
}

export interface ParserHookPlan {
  readonly hooks: readonly ParserHook[];
  /** Listed in dns.interfaces, not present: no parser there until one appears. */
  readonly missing: readonly string[];
  /** How many trusted servers are on the node (status: local_resolvers). */
  readonly localResolvers: number;
}

export function parserHooks(input: ParserHookInput): ParserHookPlan {
  const present = new Set(input.interfaces);
  const listed = input.dns.interfaces ?? [];
  const onNode = trustedServersOnNode(input.dns.trustedServers, input.addresses);
  const endpointEgress = onNode.some((server) => !isLoopbackAddress(server.address));
  const watched = listed.length > 0 ? listed.filter((name) => present.has(name)) : input.interfaces.filter((name) => name !== 'lo');
  const hooks: ParserHook[] = [];
  const seen = new Set<string>();
  for (const ifname of watched) {
    if (ifname === 'lo' || seen.has(ifname)) continue;
    seen.add(ifname);
    hooks.push({ ifname, direction: 'ingress' });
    if (!input.endpointInterfaces.has(ifname) || endpointEgress) hooks.push({ ifname, direction: 'egress' });
  }
  if (present.has('lo') && (watched.includes('lo') || onNode.length > 0)) hooks.push({ ifname: 'lo', direction: 'ingress' });
  return { hooks, missing: listed.filter((name) => !present.has(name)), localResolvers: onNode.length };
}
