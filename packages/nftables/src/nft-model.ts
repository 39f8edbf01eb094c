// A typed model of the nft objects dnsplane programs — tables, chains, rules, sets and set
// elements — as plain values. Expressions and statements mirror libnftables-json
// (`man libnftables-json`) one to one, so rendering is a direct mapping with no guessing.

export type NftFamily = 'inet' | 'ip' | 'ip6';

export interface NftTableRef {
  readonly family: NftFamily;
  readonly name: string;
}

export type NftHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

/** What makes a chain a base chain: the netfilter hook it is attached to. */
export interface NftBaseChainSpec {
  readonly type: 'filter';
  readonly hook: NftHook;
  /** Numeric priority; `filter` is 0. */
  readonly priority: number;
  readonly policy: 'accept' | 'drop';
}

export interface NftChain {
  readonly table: NftTableRef;
  readonly name: string;
  /** Absent for regular chains (jump targets). */
  readonly base?: NftBaseChainSpec;
}

export type NftSetType = 'ipv4_addr' | 'ipv6_addr' | 'inet_service' | 'ifname';
export type NftSetFlag = 'timeout' | 'interval' | 'constant';

export interface NftSet {
  readonly table: NftTableRef;
  readonly name: string;
  readonly type: NftSetType;
  readonly flags: readonly NftSetFlag[];
  /** Default element timeout, whole seconds. */
  readonly timeout?: number;
}

/** One set element; `timeout` and `expires` are in WHOLE seconds (nft 1.0.6 JSON drops fractions). */
export interface NftElementValue {
  readonly value: string;
  readonly timeout?: number;
  /**
   * The element's remaining life (with `timeout`). On an element that exists, kernels since
   * 6.12 set it in place: an add that carries it refreshes the expiry (`elementRefresh`).
   */
  readonly expires?: number;
}

/** Elements of one named set (the object of `add/delete element`). */
export interface NftElements {
  readonly table: NftTableRef;
  readonly set: string;
  readonly elements: readonly NftElementValue[];
}

// --- expressions (right and left hand sides of matches) -------------------------------

export interface NftPayloadExpr {
  readonly payload: { readonly protocol: 'ip' | 'ip6' | 'th' | 'tcp' | 'udp' | 'icmpv6'; readonly field: string };
}
export interface NftMetaExpr {
  readonly meta: { readonly key: 'iifname' | 'oifname' | 'l4proto' | 'nfproto' | 'mark' };
}
export interface NftCtExpr {
  readonly ct: { readonly key: 'state' };
}
export interface NftPrefixExpr {
  readonly prefix: { readonly addr: string; readonly len: number };
}
export interface NftRangeExpr {
  readonly range: readonly [NftValue, NftValue];
}
/** An anonymous set literal. */
export interface NftAnonymousSetExpr {
  readonly set: readonly NftValue[];
}

/** Values: literals, prefixes, ranges, anonymous sets, named set references (`"@name"`). */
export type NftValue = string | number | NftPrefixExpr | NftRangeExpr | NftAnonymousSetExpr;
/** A bitwise AND of an expression and a constant (`meta mark & 0x00010000`). */
export interface NftAndExpr {
  readonly '&': readonly [NftMetaExpr, number];
}
/**
 * A routing lookup of the destination: `fib daddr type` (what kind of address it is on this
 * node) or `fib daddr oifname` (the interface the route to it leaves by).
 */
export interface NftFibExpr {
  readonly fib: { readonly result: 'type' | 'oifname'; readonly flags: readonly ['daddr'] };
}
export type NftMatchLeft = NftPayloadExpr | NftMetaExpr | NftCtExpr | NftAndExpr | NftFibExpr;
export type NftMatchOp = '==' | '!=' | 'in';

// --- statements -------------------------------------------------------------------------

export interface NftMatchStatement {
  readonly match: { readonly op: NftMatchOp; readonly left: NftMatchLeft; readonly right: NftValue | readonly string[] };
}
export type NftVerdictStatement =
  | { readonly accept: null }
  | { readonly drop: null }
  | { readonly return: null }
  | { readonly continue: null }
  | { readonly jump: { readonly target: string } }
  | { readonly goto: { readonly target: string } };
export interface NftLogStatement {
  readonly log: { readonly prefix: string };
}
export interface NftCounterStatement {
  readonly counter: null;
}
/** Takes the packet out of connection tracking (only before conntrack: priority raw). */
export interface NftNotrackStatement {
  readonly notrack: null;
}
export type NftStatement =
  | NftMatchStatement
  | NftVerdictStatement
  | NftLogStatement
  | NftCounterStatement
  | NftNotrackStatement;

export interface NftRule {
  readonly table: NftTableRef;
  readonly chain: string;
  readonly expr: readonly NftStatement[];
  /** At most 128 bytes; dnsplane uses it to fingerprint rules. */
  readonly comment?: string;
}

// --- builders ---------------------------------------------------------------------------

export const payload = (protocol: NftPayloadExpr['payload']['protocol'], field: string): NftPayloadExpr => ({
  payload: { protocol, field },
});
export const meta = (key: NftMetaExpr['meta']['key']): NftMetaExpr => ({ meta: { key } });
export const bitAnd = (left: NftMetaExpr, mask: number): NftAndExpr => ({ '&': [left, mask] });
export const ctState: NftCtExpr = { ct: { key: 'state' } };
export const prefix = (addr: string, len: number): NftPrefixExpr => ({ prefix: { addr, len } });
export const range = (first: NftValue, last: NftValue): NftRangeExpr => ({ range: [first, last] });
export const anonymousSet = (values: readonly NftValue[]): NftAnonymousSetExpr => ({ set: values });
/** One value as itself, several as an anonymous set. */
export const oneOrSet = (values: readonly NftValue[]): NftValue =>
  values.length === 1 && values[0] !== undefined ? values[0] : anonymousSet(values);
export const setReference = (name: string): string => `@${name}`;
export const match = (
  op: NftMatchOp,
  left: NftMatchLeft,
  right: NftValue | readonly string[],
): NftMatchStatement => ({ match: { op, left, right } });

export const accept: NftVerdictStatement = { accept: null };
export const drop: NftVerdictStatement = { drop: null };
export const returnVerdict: NftVerdictStatement = { return: null };
export const jump = (target: string): NftVerdictStatement => ({ jump: { target } });
export const log = (prefixText: string): NftLogStatement => ({ log: { prefix: prefixText } });
export const counter: NftCounterStatement = { counter: null };
/** `meta mark & bit == bit`: the packet carries this mark bit. */
export const markBitSet = (bit: number): NftMatchStatement => match('==', bitAnd(meta('mark'), bit), bit);
/** `meta mark & mask == value`: a code in a multi-bit field (a single bit: markBitSet). */
export const markMatch = (mask: number, value: number): NftMatchStatement =>
  mask === value ? markBitSet(value) : match('==', bitAnd(meta('mark'), mask), value);
export const notrack: NftNotrackStatement = { notrack: null };
export const fibDaddrType: NftFibExpr = { fib: { result: 'type', flags: ['daddr'] } };
export const fibDaddrOifname: NftFibExpr = { fib: { result: 'oifname', flags: ['daddr'] } };
