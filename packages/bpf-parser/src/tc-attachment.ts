// Where dnsplane's programs sit on tc (clsact): one fixed (priority, handle) per program, so
// attaching again replaces in place (atomically, BPF_TC_F_REPLACE) and detaching or
// uninstalling finds exactly our filters and nobody else's.
import { isNotFound } from '@dnsplane/core';
import { attachTc, detachTc, queryTc, type BpfProgram, type TcAttachment, type TcDirection } from './libbpf.js';

/**
 * The tc filters dnsplane owns. Lower priorities run first: the parser, then the membership
 * mark (both return TC_ACT_UNSPEC, so the next filter still runs).
 */
export const DNSPLANE_TC_FILTERS = {
  /** The DNS parser (dnsplane_parse_tc): tc ingress of watched interfaces, egress of non-endpoint ones (and of endpoints' with a resolver on the node). */
  parser: { priority: 0xd1, handle: 0xd15 },
  /** The membership mark (dnsplane_membership_mark): tc ingress of workload interfaces. */
  membershipMark: { priority: 0xd2, handle: 0xd15 },
} as const;
export type DnsplaneTcFilter = keyof typeof DNSPLANE_TC_FILTERS;

/** A (priority, handle) on tc, e.g. another package's own filter to remove on uninstall. */
export interface TcSlot {
  readonly priority: number;
  readonly handle: number;
}

/** Attaches (or replaces) `program` at the filter's fixed slot on the interface's clsact hook. */
export function attachDnsplaneTc(filter: DnsplaneTcFilter | TcSlot, ifname: string, direction: TcDirection, program: BpfProgram): TcAttachment {
  const slot = typeof filter === 'string' ? DNSPLANE_TC_FILTERS[filter] : filter;
  return attachTc({ ifname, direction, program, priority: slot.priority, handle: slot.handle, replace: true });
}

/** Detaches the filter; false when it was not attached. NotFoundError when the interface is missing. */
export function detachDnsplaneTc(filter: DnsplaneTcFilter | TcSlot, ifname: string, direction: TcDirection): boolean {
  const slot = typeof filter === 'string' ? DNSPLANE_TC_FILTERS[filter] : filter;
  const ref = { ifname, direction, priority: slot.priority, handle: slot.handle };
  if (queryTc(ref) === undefined) return false;
  try {
    detachTc(ref);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false; // gone meanwhile
    throw error;
  }
}

/** The kernel id of the program at the filter's slot, or undefined. */
export function queryDnsplaneTc(filter: DnsplaneTcFilter | TcSlot, ifname: string, direction: TcDirection): number | undefined {
  const slot = typeof filter === 'string' ? DNSPLANE_TC_FILTERS[filter] : filter;
  return queryTc({ ifname, direction, priority: slot.priority, handle: slot.handle });
}
