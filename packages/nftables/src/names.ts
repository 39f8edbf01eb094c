// Names of dnsplane's objects inside its own table. Chain names are readable when the
// endpoint/policy name is plain, and suffixed with a short hash when it had to be changed,
// so two different names can never map to the same chain.
import { createHash } from 'node:crypto';
import type { Direction, DomainSet, IpFamily } from '@dnsplane/core';

export const DEFAULT_TABLE_NAME = 'dnsplane';

/** Base chains: one per (hook, direction) so an accept for one side never skips the other. */
export const BASE_CHAINS = {
  /** Traffic leaving a workload, routed through the node: dispatch on iifname. */
  forwardEgress: 'forward_egress',
  /** Traffic routed towards a workload: dispatch on oifname. */
  forwardIngress: 'forward_ingress',
  /** Traffic from a workload to the node itself: the workload's egress (iifname). */
  inputEgress: 'input_egress',
  /** Traffic to the node: host endpoints' ingress. */
  inputIngress: 'input_ingress',
  /** Traffic from the node: host endpoints' egress. */
  outputEgress: 'output_egress',
  /** Traffic from the node to a workload: the workload's ingress (oifname). */
  outputIngress: 'output_ingress',
  /** Before conntrack: takes enforced workloads' UDP DNS with trusted servers out of tracking. */
  preroutingUntrack: 'prerouting_untrack',
} as const;

/** Priorities: the egress stage runs first, then the ingress stage (both around `filter`). */
export const EGRESS_STAGE_PRIORITY = 0;
export const INGRESS_STAGE_PRIORITY = 10;
/** `raw`: before conntrack (-200), where `notrack` works. */
export const RAW_PRIORITY = -300;

const PLAIN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function shortHash(text: string, length = 8): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/** A chain-name-safe form of a user-given name. */
export function safeName(name: string): string {
  if (PLAIN.test(name)) return name;
  const cleaned = name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 48);
  return `${cleaned}_${shortHash(name)}`;
}

/** Chains holding one policy's rules for one direction, and one endpoint's dispatch to them. */
export const POLICY_CHAIN_PREFIX = 'pol_';
export const ENDPOINT_CHAIN_PREFIX = 'ep_';
export const policyChainName = (policy: string, direction: Direction): string => `${POLICY_CHAIN_PREFIX}${safeName(policy)}_${direction}`;
export const endpointChainName = (endpoint: string, direction: Direction): string =>
  `${ENDPOINT_CHAIN_PREFIX}${safeName(endpoint)}_${direction}`;
export const domainSetName = (set: Pick<DomainSet, 'name'>, family: IpFamily): string => `${set.name}_v${family}`;

/** Table names we accept: our own prefix, nothing an nft command line could misread. */
export function assertTableName(name: string): string {
  if (!/^dnsplane[A-Za-z0-9_]{0,56}$/.test(name)) {
    throw new RangeError(`nft table name must start with "dnsplane" and use [A-Za-z0-9_], got "${name}"`);
  }
  return name;
}

/** `text` cut to at most `maxBytes` UTF-8 bytes, never inside a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = '';
  for (const char of text) {
    if (Buffer.byteLength(out + char) > maxBytes) break;
    out += char;
  }
  return out;
}
