// The iptables model: tables, chains and rules as plain typed values. The compiler
// (compile.ts) builds it from a DesiredState; the renderer (render.ts) prints it as
// iptables-restore input. No I/O here.
import type { IpFamily, PortRange } from '@dnsplane/core';

/** Every chain dnsplane owns starts with this; nothing else is ever touched. */
export const CHAIN_PREFIX = 'DNSPLANE-';

/** Longest chain name iptables accepts (XT_EXTENSION_MAXNAMELEN 29, minus the NUL). */
export const MAX_CHAIN_NAME = 28;

/** Longest LOG prefix iptables accepts (29 characters). */
export const MAX_LOG_PREFIX = 29;

/** At most this many ports (a range counts two) in one `-m multiport` match. */
export const MAX_MULTIPORT_PORTS = 15;

export type BuiltinChain = 'INPUT' | 'FORWARD' | 'OUTPUT';
export type TableName = 'filter';
export type ConntrackState = 'ESTABLISHED' | 'RELATED' | 'NEW' | 'INVALID';
export type PeerSide = 'source' | 'destination';

/** One match of a rule; the renderer prints them in the order given. */
export type Match =
  | { readonly kind: 'protocol'; readonly protocol: number }
  | { readonly kind: 'inInterface'; readonly name: string; readonly negate?: boolean }
  | { readonly kind: 'outInterface'; readonly name: string; readonly negate?: boolean }
  | { readonly kind: 'address'; readonly side: PeerSide; readonly cidr: string; readonly negate: boolean }
  /** `-m multiport [!] --sports/--dports`: at most MAX_MULTIPORT_PORTS ports (ranges count two). */
  | { readonly kind: 'ports'; readonly side: PeerSide; readonly ranges: readonly PortRange[]; readonly negate: boolean }
  | { readonly kind: 'conntrack'; readonly states: readonly ConntrackState[] }
  /** `-m icmp6 --icmpv6-type <n>` (needs `-p ipv6-icmp` before it). */
  | { readonly kind: 'icmpv6Type'; readonly type: number }
  | { readonly kind: 'mark'; readonly value: number; readonly mask: number }
  /** `-m bpf --object-pinned <path>`: a pinned socket-filter program decides (domain-set membership). */
  | { readonly kind: 'bpfPinned'; readonly path: string };

export type Target =
  /** No target: the rule only runs its matches (e.g. the DNS parser) and evaluation goes on. */
  | { readonly kind: 'none' }
  | { readonly kind: 'accept' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'return' }
  | { readonly kind: 'jump'; readonly chain: string }
  /** `-g`: continue in `chain`; when it returns, return from the current chain too. */
  | { readonly kind: 'goto'; readonly chain: string }
  | { readonly kind: 'log'; readonly prefix: string }
  | { readonly kind: 'setMark'; readonly value: number; readonly mask: number };

export interface Rule {
  readonly matches: readonly Match[];
  readonly target: Target;
}

export interface Chain {
  readonly name: string;
  readonly rules: readonly Rule[];
}

/** A rule in a built-in chain that sends traffic to one of our chains (`-j <chain>`). */
export interface Jump {
  readonly from: BuiltinChain;
  readonly to: string;
}

export interface Table {
  readonly name: TableName;
  /** Our own chains, in declaration order. */
  readonly chains: readonly Chain[];
  /** Jumps from built-in chains; inserted first in the built-in chain, exactly once each. */
  readonly jumps: readonly Jump[];
}

/** Everything one address family (iptables or ip6tables) must hold. */
export interface Ruleset {
  readonly family: IpFamily;
  readonly tables: readonly Table[];
}
