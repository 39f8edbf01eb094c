// DesiredState → the nft objects of dnsplane's table: base chains at the hooks endpoint
// traffic passes, one chain per (endpoint, direction) and per (policy, direction), and a pair
// of timeout sets per domain set. Pure: no kernel I/O.
import { canonicalAddress, type CompiledEndpoint, type CompiledPolicy, type DesiredState, type Direction, type DomainSet, type IpFamily } from '@dnsplane/core';
import {
  accept,
  anonymousSet,
  counter,
  ctState,
  drop,
  fibDaddrType,
  fibDaddrOifname,
  jump,
  markBitSet,
  match,
  meta,
  notrack,
  oneOrSet,
  payload,
  type NftBaseChainSpec,
  type NftChain,
  type NftHook,
  type NftRule,
  type NftSet,
  type NftStatement,
  type NftTableRef,
} from './nft-model.js';
import {
  BASE_CHAINS,
  EGRESS_STAGE_PRIORITY,
  INGRESS_STAGE_PRIORITY,
  RAW_PRIORITY,
  domainSetName,
  endpointChainName,
  policyChainName,
  shortHash,
  truncateUtf8,
} from './names.js';
import { assignMarkBits, markMatchOf, type MarkAssignment } from './mark-bits.js';
import { renderRule, type RuleContext } from './render-rules.js';

export interface DesiredChain {
  readonly chain: NftChain;
  readonly rules: readonly NftRule[];
}

export interface DesiredTable {
  readonly table: NftTableRef;
  readonly sets: readonly NftSet[];
  /** Regular chains first (jump targets), base chains last. */
  readonly chains: readonly DesiredChain[];
  /** The packet-mark bits of the domain sets (what the tc membership marker is programmed with). */
  readonly marks: MarkAssignment;
  /** Whose UDP DNS is out of connection tracking (what the parser's answer marks are programmed with). */
  readonly untracked: UntrackedDns;
}

/**
 * UDP DNS exchanges with trusted servers taken out of connection tracking: queries arriving on
 * `interfaces` (enforced workloads' host-side interfaces) are not tracked, and their answers
 * are admitted by `answerMark`, which the parser sets only on an answer it verified against
 * the query it recorded from one of those interfaces. Empty `interfaces`: nothing untracked.
 */
export interface UntrackedDns {
  /** The verified-answer mark bit (0: the feature is off). */
  readonly answerMark: number;
  /** Host-side interfaces of the workloads whose UDP DNS is untracked, sorted. */
  readonly interfaces: readonly string[];
  /**
   * dns.interfaces when it lists some: a query is untracked only if the route to its server
   * leaves by one of them — its answer comes in there, where the parser can mark it. Otherwise
   * the answer would come in unmarked and untracked, and an ingress policy would drop it.
   * Absent: every interface is watched.
   */
  readonly answersWatchedOn?: readonly string[];
}

export interface DesiredTableOptions {
  /** Packet-mark bits for kernel membership (default DEFAULT_MARK_MASK). */
  readonly markMask?: number;
  /** The verified-answer mark bit; absent or 0: every DNS exchange stays tracked. */
  readonly answerMark?: number;
  /**
   * The trusted servers' addresses that are the node's own (canonical text), as the install
   * found them: queries to these stay tracked, and the untrack rule needs no per-packet route
   * lookup. Absent: not known, so the rule asks `fib daddr type != local` of every query.
   */
  readonly serversOnNode?: readonly string[];
}

/** nft keeps at most 128 bytes of rule comment (with its NUL). */
const MAX_COMMENT = 127;

/**
 * Every rule carries a comment ending in a hash of its statements: a chain whose comments
 * read back unchanged from the kernel holds exactly the desired rules and is left alone.
 */
export function ruleComment(label: string, expr: readonly NftStatement[]): string {
  const hash = `#${shortHash(JSON.stringify(expr), 12)}`;
  return `${truncateUtf8(label, MAX_COMMENT - hash.length - 1)} ${hash}`;
}

class ChainBuilder {
  readonly #rules: NftRule[] = [];
  constructor(readonly chain: NftChain) {}

  rule(label: string, expr: readonly NftStatement[]): this {
    this.#rules.push({ table: this.chain.table, chain: this.chain.name, expr, comment: ruleComment(label, expr) });
    return this;
  }

  build(): DesiredChain {
    return { chain: this.chain, rules: this.#rules };
  }
}

const establishedRelated = match('in', ctState, ['established', 'related']);
const invalid = match('in', ctState, ['invalid']);
/**
 * IPv6 neighbour discovery (router solicit/advert, neighbour solicit/advert) is untracked by
 * conntrack and must pass, or a selected endpoint loses IPv6 altogether.
 */
const neighbourDiscovery = match('==', payload('icmpv6', 'type'), anonymousSet([133, 134, 135, 136]));

function baseChain(table: NftTableRef, name: string, hook: NftHook, priority: number): ChainBuilder {
  const base: NftBaseChainSpec = { type: 'filter', hook, priority, policy: 'accept' };
  return new ChainBuilder({ table, name, base }).rule('established,related', [establishedRelated, accept]);
}

function policiesFor(
  endpoint: CompiledEndpoint,
  direction: Direction,
  policies: ReadonlyMap<string, CompiledPolicy>,
): CompiledPolicy[] {
  const names = direction === 'ingress' ? endpoint.ingressPolicies : endpoint.egressPolicies;
  return names
    .map((name) => policies.get(name))
    .filter((p): p is CompiledPolicy => p !== undefined && p[direction] !== undefined);
}

const FAMILY = { 4: { nfproto: 'ipv4', protocol: 'ip' }, 6: { nfproto: 'ipv6', protocol: 'ip6' } } as const;

/** Whose UDP DNS goes untracked: workloads selected in egress, on an interface the parser watches. */
function untrackedDns(state: DesiredState, policies: ReadonlyMap<string, CompiledPolicy>, options: DesiredTableOptions): UntrackedDns {
  const answerMark = options.answerMark ?? 0;
  if (answerMark === 0 || state.dns.trustedServers.length === 0) return { answerMark, interfaces: [] };
  // Only where the parser watches (dns.interfaces; empty: everywhere) can a query be recorded.
  const watched = state.dns.interfaces ?? [];
  const interfaces = state.endpoints.flatMap((e) =>
    !e.host && e.interface !== undefined && policiesFor(e, 'egress', policies).length > 0 && (watched.length === 0 || watched.includes(e.interface))
      ? [e.interface]
      : [],
  );
  return {
    answerMark,
    interfaces: [...new Set(interfaces)].sort(),
    ...(watched.length === 0 ? {} : { answersWatchedOn: [...new Set(watched)].sort() }),
  };
}

/**
 * The raw-priority prerouting chain's rules, per address family of the trusted servers: a UDP
 * query from an untracked interface to a trusted server (not one on this node: its answer
 * would leave through output, where the parser does not see it; with dns.interfaces listed,
 * one routed out by a watched interface: its answer comes in where the parser marks it) is
 * not tracked; an answer from a trusted server carrying the verified-answer mark is not
 * tracked either. Which servers are on the node is the install's `serversOnNode` where known
 * (the agent installs again when that changes), so the rule needs no per-packet `fib` lookup
 * (0.0–0.6 µs a query in three bench runs; bench/README.md, "Crossing the node"). Unknown: the
 * rule asks fib. No counters here or on the verified-answer accept: every DNS packet of an
 * enforced workload passes them (parser counters and conntrack tell what they did).
 */
function untrackRules(untracked: UntrackedDns, state: DesiredState, serversOnNode: readonly string[] | undefined): Array<{ label: string; expr: NftStatement[] }> {
  const rules: Array<{ label: string; expr: NftStatement[] }> = [];
  if (untracked.interfaces.length === 0) return rules;
  const marked = markBitSet(untracked.answerMark);
  const udp = match('==', meta('l4proto'), 'udp');
  const onNode = new Set(serversOnNode ?? []);
  for (const family of [4, 6] as const satisfies readonly IpFamily[]) {
    const servers = state.dns.trustedServers.filter((s) => s.family === family);
    if (servers.length === 0) continue;
    // A server on the node answers through output, never through prerouting: no rule of either kind.
    const remote = servers.filter((s) => !onNode.has(canonicalAddress(s.address) ?? s.address));
    if (remote.length === 0) continue;
    const { nfproto, protocol } = FAMILY[family];
    const addresses = [...new Set(remote.map((s) => s.address))].sort();
    const ports = [...new Set(remote.map((s) => s.port))].sort((a, b) => a - b);
    rules.push({
      label: `untrack dns query ipv${family}`,
      expr: [
        udp,
        match('==', payload('udp', 'dport'), oneOrSet(ports)),
        match('==', meta('iifname'), oneOrSet(untracked.interfaces)),
        match('==', meta('nfproto'), nfproto),
        match('==', payload(protocol, 'daddr'), oneOrSet(addresses)),
        ...(serversOnNode === undefined ? [match('!=', fibDaddrType, 'local')] : []),
        ...(untracked.answersWatchedOn === undefined ? [] : [match('==', fibDaddrOifname, oneOrSet(untracked.answersWatchedOn))]),
        notrack,
      ],
    });
    rules.push({
      label: `untrack verified dns answer ipv${family}`,
      expr: [
        marked,
        udp,
        match('==', payload('udp', 'sport'), oneOrSet(ports)),
        match('==', meta('nfproto'), nfproto),
        match('==', payload(protocol, 'saddr'), oneOrSet(addresses)),
        notrack,
      ],
    });
  }
  return rules;
}

export function desiredTable(state: DesiredState, table: NftTableRef, options: DesiredTableOptions = {}): DesiredTable {
  const domainSets = new Map<number, DomainSet>(state.domainSets.map((s) => [s.id, s]));
  const marks = assignMarkBits(state, options.markMask);
  const policies = new Map<string, CompiledPolicy>(state.policies.map((p) => [p.name, p]));

  const sets: NftSet[] = [...state.domainSets]
    .sort((a, b) => a.id - b.id)
    .flatMap((set) => [
      { table, name: domainSetName(set, 4), type: 'ipv4_addr' as const, flags: ['timeout' as const] },
      { table, name: domainSetName(set, 6), type: 'ipv6_addr' as const, flags: ['timeout' as const] },
    ]);

  const markMatches = new Map(state.domainSets.flatMap((set) => {
    const mark = markMatchOf(marks, set.id);
    return mark === undefined ? [] : [[set.id, mark] as const];
  }));
  const policyChains: DesiredChain[] = [];
  for (const policy of state.policies) {
    for (const direction of ['ingress', 'egress'] as const) {
      const rules = policy[direction];
      if (rules === undefined) continue;
      const builder = new ChainBuilder({ table, name: policyChainName(policy.name, direction) });
      const context: RuleContext = { policy: policy.name, direction, domainSets, markMatches };
      for (const rule of rules) {
        for (const expr of renderRule(rule, context)) {
          builder.rule(`${policy.name} ${direction} ${rule.index} ${rule.action}`, expr);
        }
      }
      policyChains.push(builder.build());
    }
  }

  const forwardEgress = baseChain(table, BASE_CHAINS.forwardEgress, 'forward', EGRESS_STAGE_PRIORITY);
  const forwardIngress = baseChain(table, BASE_CHAINS.forwardIngress, 'forward', INGRESS_STAGE_PRIORITY);
  const inputEgress = baseChain(table, BASE_CHAINS.inputEgress, 'input', EGRESS_STAGE_PRIORITY);
  const inputIngress = baseChain(table, BASE_CHAINS.inputIngress, 'input', INGRESS_STAGE_PRIORITY);
  const outputEgress = baseChain(table, BASE_CHAINS.outputEgress, 'output', EGRESS_STAGE_PRIORITY);
  const outputIngress = baseChain(table, BASE_CHAINS.outputIngress, 'output', INGRESS_STAGE_PRIORITY);
  // Answers to untracked DNS queries: admitted by the parser's verification (the mark), as a
  // tracked answer is by `established` (forward only: host endpoints' DNS stays tracked).
  const untracked = untrackedDns(state, policies, options);
  const untrack = untrackRules(untracked, state, options.serversOnNode);
  if (untrack.length > 0) {
    const verified = [
      markBitSet(untracked.answerMark),
      match('==', meta('l4proto'), 'udp'),
      match('in', ctState, ['untracked']),
      accept,
    ];
    forwardEgress.rule('verified dns answer', verified);
    forwardIngress.rule('verified dns answer', verified);
  }
  // The node talking to itself is never policed, whatever a host endpoint's policy says.
  inputIngress.rule('loopback', [match('==', meta('iifname'), 'lo'), accept]);
  outputEgress.rule('loopback', [match('==', meta('oifname'), 'lo'), accept]);

  const endpointChains: DesiredChain[] = [];
  /** The base chains with an endpoint's dispatch rule. */
  const dispatching = new Set<ChainBuilder>();
  const endpoints = [...state.endpoints].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const endpoint of endpoints) {
    for (const direction of ['ingress', 'egress'] as const) {
      const applied = policiesFor(endpoint, direction, policies);
      if (applied.length === 0) continue; // not selected in this direction: untouched
      const name = endpointChainName(endpoint.name, direction);
      const builder = new ChainBuilder({ table, name })
        .rule('neighbour discovery', [neighbourDiscovery, accept])
        .rule('invalid', [invalid, drop]);
      for (const policy of applied) builder.rule(`policy ${policy.name}`, [jump(policyChainName(policy.name, direction))]);
      builder.rule(`default deny ${endpoint.name} ${direction}`, [counter, drop]); // counted: status()
      endpointChains.push(builder.build());

      const label = `endpoint ${endpoint.name}`;
      const dispatchFrom = (chains: readonly ChainBuilder[], expr: readonly NftStatement[]): void => {
        for (const chain of chains) dispatching.add(chain.rule(label, expr));
      };
      if (endpoint.host) {
        dispatchFrom([direction === 'ingress' ? inputIngress : outputEgress], [jump(name)]);
      } else if (endpoint.interface !== undefined) {
        const key = direction === 'egress' ? meta('iifname') : meta('oifname');
        const dispatch = [match('==', key, endpoint.interface), jump(name)];
        dispatchFrom(direction === 'egress' ? [forwardEgress, inputEgress] : [forwardIngress, outputIngress], dispatch);
      }
    }
  }

  // A base chain that sends no endpoint anywhere only accepts (established, verified answers,
  // loopback, its policy): the same as no chain, yet every packet on its hook would run it —
  // on the bench, this chain and the DNS rules' counters cost an exchange ~0.6 µs
  // (bench/README.md, "Crossing the node"). Only the chains that dispatch are hooked.
  const builders = [forwardEgress, forwardIngress, inputEgress, inputIngress, outputEgress, outputIngress].filter((chain) => dispatching.has(chain));
  if (untrack.length > 0) {
    // A filter chain at raw priority (before conntrack), only while something is untracked.
    const raw = new ChainBuilder({
      table,
      name: BASE_CHAINS.preroutingUntrack,
      base: { type: 'filter', hook: 'prerouting', priority: RAW_PRIORITY, policy: 'accept' },
    });
    for (const { label, expr } of untrack) raw.rule(label, expr);
    builders.push(raw);
  }
  const baseChains = builders.map((b) => b.build());
  return { table, sets, chains: [...policyChains, ...endpointChains, ...baseChains], marks, untracked };
}
