// The compiler's output: everything a dataplane must program, as plain typed values.
// Pure data — no I/O, no classes — so it can be diffed, printed (`apply --dry-run`) and
// handed to any driver.
import type { DomainPattern } from './domain-pattern-model.js';

export type DataplaneKind = 'nftables' | 'iptables' | 'ebpf';
export const DATAPLANE_KINDS: readonly DataplaneKind[] = ['nftables', 'iptables', 'ebpf'];

export type Direction = 'ingress' | 'egress';
export type IpFamily = 4 | 6;

/** An inclusive port range; a single port has first === last. */
export interface PortRange {
  readonly first: number;
  readonly last: number;
}

/** A CIDR in canonical text form ("198.18.0.0/15", "fd00::/8"). */
export interface Cidr {
  readonly family: IpFamily;
  readonly text: string;
}

export type RuleAction = 'allow' | 'deny' | 'log' | 'pass';

/** One side (source or destination) of a rule, after normalisation. Empty lists match anything. */
export interface CompiledPeer {
  readonly nets: readonly Cidr[];
  readonly notNets: readonly Cidr[];
  readonly ports: readonly PortRange[];
  readonly notPorts: readonly PortRange[];
  /** Id of the domain set whose learned members this side must be in (egress destinations only). */
  readonly domainSetId?: number;
}

export interface CompiledRule {
  /** Position of the rule in its policy's list for this direction (0-based); used in log prefixes. */
  readonly index: number;
  readonly action: RuleAction;
  /** IANA protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6); absent = any. */
  readonly protocol?: number;
  /** Set when the rule can only match one address family (nets of one family, ICMP vs ICMPv6). */
  readonly family?: IpFamily;
  readonly source: CompiledPeer;
  readonly destination: CompiledPeer;
}

/**
 * A policy, shared by every endpoint it selects. A direction that is absent means the policy
 * does not apply in that direction; an empty list means it applies and allows nothing.
 * Evaluation: rules in order; allow/deny end evaluation, log continues, pass skips the rest of
 * this policy and continues with the next policy; when no policy allowed or denied, the packet
 * is denied (default deny for selected endpoints).
 */
export interface CompiledPolicy {
  readonly name: string;
  readonly order: number;
  readonly ingress?: readonly CompiledRule[];
  readonly egress?: readonly CompiledRule[];
}

export interface CompiledEndpoint {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Host-side interface of a workload (absent for host endpoints). */
  readonly interface?: string;
  /** The node itself: enforced on input/output rather than forward. */
  readonly host: boolean;
  readonly addresses: readonly Cidr[];
  /** Names of the policies that apply, in evaluation order. Empty = not selected = untouched. */
  readonly ingressPolicies: readonly string[];
  readonly egressPolicies: readonly string[];
}

/** A named group of domain patterns whose learned addresses a rule matches against. */
export interface DomainSet {
  /** Stable numeric id (1..2^32-1): the same patterns give the same id across runs. */
  readonly id: number;
  /** Short stable name for dataplane objects ("ds_<id in hex>"). */
  readonly name: string;
  readonly patterns: readonly DomainPattern[];
}

export interface TrustedServer {
  readonly family: IpFamily;
  readonly address: string;
  readonly port: number;
}

export interface DnsSettings {
  readonly trustedServers: readonly TrustedServer[];
  readonly minTTL: number;
  readonly extraTTL: number;
  readonly maxAddressesPerName: number;
  /**
   * Interfaces whose DNS traffic the parser watches (every dataplane), sorted; absent or
   * empty: every interface but lo. Part of the state so that changing it installs again.
   */
  readonly interfaces?: readonly string[];
}

export interface DesiredState {
  readonly domainSets: readonly DomainSet[];
  /** Sorted by (order, name): the evaluation order. */
  readonly policies: readonly CompiledPolicy[];
  readonly endpoints: readonly CompiledEndpoint[];
  readonly dns: DnsSettings;
}

/**
 * The host-side interfaces of the workload endpoints (not `host: true`), in endpoint order:
 * what every dataplane treats as a workload's interface (where the parser watches, iptables'
 * parser rules, ebpf's hooks).
 */
export function workloadInterfaces(state: Pick<DesiredState, 'endpoints'>): string[] {
  return state.endpoints.flatMap((e) => (e.host || e.interface === undefined ? [] : [e.interface]));
}
