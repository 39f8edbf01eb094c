// One compiled policy rule → nft rule bodies (statement lists). A rule that mixes address
// families (nets of both, a domain set, notNets) becomes one nft rule per family, each
// guarded by `meta nfproto`, because `ip daddr` and `ip6 daddr` cannot share a rule.
import type { Cidr, CompiledPeer, CompiledRule, Direction, DomainSet, IpFamily, PortRange } from '@dnsplane/core';
import {
  accept,
  anonymousSet,
  counter,
  drop,
  log,
  markMatch,
  match,
  meta,
  oneOrSet,
  payload,
  prefix,
  range,
  returnVerdict,
  setReference,
  type NftStatement,
  type NftValue,
} from './nft-model.js';
import { domainSetName, truncateUtf8 } from './names.js';

/** Protocols with ports at the usual transport-header offset (TCP, UDP, SCTP, UDPLite, DCCP). */
const PORT_PROTOCOLS = [6, 17, 132, 136, 33];
const ICMP = 1;
const ICMPV6 = 58;
/** nft's log prefix limit in bytes (NF_LOG_PREFIXLEN - 1). */
const MAX_LOG_PREFIX = 127;

export interface RuleContext {
  readonly policy: string;
  readonly direction: Direction;
  readonly domainSets: ReadonlyMap<number, DomainSet>;
  /**
   * Domain set id → what the tc membership marker writes into the packet mark for it (egress
   * only): `meta mark & mask == value` — its own bit (mask = value), or its code in the code
   * field. A rule on such a set renders twice: on the mark, and on the nft set the mirror fills.
   */
  readonly markMatches?: ReadonlyMap<number, { readonly mask: number; readonly value: number }>;
}

function cidrValue(cidr: Cidr): NftValue {
  const [addr, len] = cidr.text.split('/');
  if (addr === undefined) throw new RangeError(`bad CIDR ${cidr.text}`);
  const bits = len === undefined ? (cidr.family === 4 ? 32 : 128) : Number(len);
  if (bits === (cidr.family === 4 ? 32 : 128)) return addr;
  return prefix(addr, bits);
}

function portValue(port: PortRange): NftValue {
  return port.first === port.last ? port.first : range(port.first, port.last);
}

/** One value as itself, several as an anonymous set. */

function familiesOf(cidrs: readonly Cidr[]): Set<IpFamily> {
  return new Set(cidrs.map((c) => c.family));
}

function peerStatements(
  peer: CompiledPeer,
  side: 'saddr' | 'daddr',
  family: IpFamily,
  context: RuleContext,
  viaMark = false,
): NftStatement[] {
  const statements: NftStatement[] = [];
  const proto = family === 4 ? 'ip' : 'ip6';
  const nets = peer.nets.filter((c) => c.family === family).map(cidrValue);
  const notNets = peer.notNets.filter((c) => c.family === family).map(cidrValue);
  if (nets.length > 0) statements.push(match('==', payload(proto, side), oneOrSet(nets)));
  if (notNets.length > 0) statements.push(match('!=', payload(proto, side), oneOrSet(notNets)));
  if (peer.domainSetId !== undefined) {
    const set = context.domainSets.get(peer.domainSetId);
    if (set === undefined) throw new RangeError(`rule refers to unknown domain set id ${peer.domainSetId}`);
    const mark = viaMark ? context.markMatches?.get(peer.domainSetId) : undefined;
    statements.push(
      mark === undefined
        ? match('==', payload(proto, side), setReference(domainSetName(set, family)))
        : markMatch(mark.mask, mark.value),
    );
  }
  return statements;
}

function portStatements(peer: CompiledPeer, field: 'sport' | 'dport'): NftStatement[] {
  const statements: NftStatement[] = [];
  if (peer.ports.length > 0) statements.push(match('==', payload('th', field), oneOrSet(peer.ports.map(portValue))));
  if (peer.notPorts.length > 0) {
    statements.push(match('!=', payload('th', field), oneOrSet(peer.notPorts.map(portValue))));
  }
  return statements;
}

export function logPrefix(policy: string, direction: Direction, index: number): string {
  const tail = ` ${direction} ${index}: `;
  const head = 'dnsplane ';
  return `${head}${truncateUtf8(policy, MAX_LOG_PREFIX - head.length - tail.length)}${tail}`;
}

function actionStatement(rule: CompiledRule, context: RuleContext): NftStatement {
  switch (rule.action) {
    case 'allow':
      return accept;
    case 'deny':
      return drop;
    case 'log':
      return log(logPrefix(context.policy, context.direction, rule.index));
    case 'pass':
      return returnVerdict;
  }
}

function hasPorts(peer: CompiledPeer): boolean {
  return peer.ports.length > 0 || peer.notPorts.length > 0;
}

/** The nft rule bodies for one compiled rule, in order (empty when it can never match). */
export function renderRule(rule: CompiledRule, context: RuleContext): NftStatement[][] {
  let families: IpFamily[] = [4, 6];
  const restrict = (allowed: Set<IpFamily>): void => {
    families = families.filter((f) => allowed.has(f));
  };
  if (rule.family !== undefined) restrict(new Set([rule.family]));
  if (rule.protocol === ICMP) restrict(new Set([4]));
  if (rule.protocol === ICMPV6) restrict(new Set([6]));
  if (rule.source.nets.length > 0) restrict(familiesOf(rule.source.nets));
  if (rule.destination.nets.length > 0) restrict(familiesOf(rule.destination.nets));

  const familySpecific =
    rule.source.notNets.length > 0 ||
    rule.destination.notNets.length > 0 ||
    rule.source.nets.length > 0 ||
    rule.destination.nets.length > 0 ||
    rule.source.domainSetId !== undefined ||
    rule.destination.domainSetId !== undefined;
  const perFamily: Array<IpFamily | undefined> =
    families.length === 2 && !familySpecific ? [undefined] : families;

  const protocolStatements: NftStatement[] = [];
  if (rule.protocol !== undefined) {
    protocolStatements.push(match('==', meta('l4proto'), rule.protocol));
  } else if (hasPorts(rule.source) || hasPorts(rule.destination)) {
    protocolStatements.push(match('==', meta('l4proto'), anonymousSet(PORT_PROTOCOLS)));
  }
  const ports = [...portStatements(rule.source, 'sport'), ...portStatements(rule.destination, 'dport')];

  const body = (family: IpFamily | undefined, viaMark: boolean): NftStatement[] => [
    ...(family !== undefined ? [match('==', meta('nfproto'), family === 4 ? 'ipv4' : 'ipv6')] : []),
    ...protocolStatements,
    ...(family !== undefined ? peerStatements(rule.source, 'saddr', family, context) : []),
    ...(family !== undefined ? peerStatements(rule.destination, 'daddr', family, context, viaMark) : []),
    ...ports,
    // Every policy rule counts what it matched (`nft list chain` shows it; status sums the
    // accept and drop rules' packets as policy.allowed / policy.denied).
    counter,
    actionStatement(rule, context),
  ];
  // The mark rule first: the packet-path lookup (the tc marker) never waits for the mirror.
  const marked =
    context.direction === 'egress' &&
    rule.destination.domainSetId !== undefined &&
    context.markMatches?.has(rule.destination.domainSetId) === true;
  return perFamily.flatMap((family) => (marked ? [body(family, true), body(family, false)] : [body(family, false)]));
}
