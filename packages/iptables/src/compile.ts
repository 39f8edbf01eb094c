// DesiredState → one Ruleset per address family (the chain layout is described in README.md).
//
// Evaluation (desired-state.ts): established/related first; then, per selected endpoint and
// direction, its policies in order; in a policy the rules in order — allow/deny end
// evaluation, log continues, pass leaves the policy; no verdict → default deny.
//
// Allow cannot be a plain ACCEPT: a packet between two local workloads is checked by the
// sender's egress chain and then by the receiver's ingress chain in the same FORWARD
// traversal, and ACCEPT would skip the second. So allow sets the `allow` mark bit and leaves
// the policy (`-g DNSPLANE-ALLOW`); the endpoint chain returns as soon as the bit is set; the
// dispatch chain ACCEPTs at its end when the bit is still set.
import type { CompiledPeer, CompiledPolicy, CompiledRule, Cidr, DesiredState, Direction, IpFamily, PortRange, TrustedServer } from '@dnsplane/core';
import { NotSupportedError, workloadInterfaces } from '@dnsplane/core';
import type { DomainMatchProvider } from './domain-match.js';
import { CHAIN_PREFIX, MAX_MULTIPORT_PORTS } from './model.js';
import type { BuiltinChain, Chain, Jump, Match, Rule, Ruleset, Target } from './model.js';
import { logPrefix, objectChainName } from './names.js';
import type { ChainKind } from './names.js';

/** Two packet-mark bits dnsplane owns (set and cleared only inside its chains). */
export interface MarkBits {
  /** "An allow rule matched": set by DNSPLANE-ALLOW, read by endpoint and dispatch chains. */
  readonly allow: number;
  /** Scratch bit: "the rule matched" for rules with several notNets (see `NN` chains). */
  readonly match: number;
}

export const DEFAULT_MARKS: MarkBits = { allow: 0x0100_0000, match: 0x0200_0000 };

export interface CompileOptions {
  readonly domainMatches: DomainMatchProvider;
  readonly marks: MarkBits;
  /** Pinned parser program: when set, DNS traffic of trusted servers runs through it first. */
  readonly dnsParserPath?: string;
}

export const DISPATCH_CHAINS: Readonly<Record<BuiltinChain, string>> = {
  INPUT: `${CHAIN_PREFIX}INPUT`,
  FORWARD: `${CHAIN_PREFIX}FORWARD`,
  OUTPUT: `${CHAIN_PREFIX}OUTPUT`,
};
export const ALLOW_CHAIN = `${CHAIN_PREFIX}ALLOW`;
/** The parser's rules, when dns.interfaces names the interfaces it watches (else they sit in the dispatch chains). */
export const PARSER_CHAIN = `${CHAIN_PREFIX}DNS`;
/** Per built-in chain, the interfaces whose packets go on to PARSER_CHAIN (goto: each packet at most once). */
export const PARSER_INTERFACE_CHAINS: Readonly<Record<BuiltinChain, string>> = {
  INPUT: `${CHAIN_PREFIX}DNS-INPUT`,
  FORWARD: `${CHAIN_PREFIX}DNS-FORWARD`,
  OUTPUT: `${CHAIN_PREFIX}DNS-OUTPUT`,
};

/** The jumps from built-in chains: always these three, whatever the state. */
export const JUMPS: readonly Jump[] = (['INPUT', 'FORWARD', 'OUTPUT'] as const).map((from) => ({
  from,
  to: DISPATCH_CHAINS[from],
}));

const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136]);
const ICMP = 1;
const ICMPV6 = 58;

const invalid: Rule = {
  matches: [{ kind: 'conntrack', states: ['INVALID'] }],
  target: { kind: 'drop' },
};

const established: Rule = {
  matches: [{ kind: 'conntrack', states: ['RELATED', 'ESTABLISHED'] }],
  target: { kind: 'accept' },
};

export function compileRulesets(state: DesiredState, options: CompileOptions): { v4: Ruleset; v6: Ruleset } {
  return { v4: compileRuleset(state, 4, options), v6: compileRuleset(state, 6, options) };
}

export function compileRuleset(state: DesiredState, family: IpFamily, options: CompileOptions): Ruleset {
  const { marks } = options;
  const names = new ChainNames();
  const policies = new Map(state.policies.map((p) => [p.name, p]));
  const policyChains: Chain[] = [];
  const subChains: Chain[] = [];
  const compiledPolicy = new Map<string, string>();

  const policyChain = (policy: CompiledPolicy, direction: Direction): string | undefined => {
    const rules = direction === 'ingress' ? policy.ingress : policy.egress;
    if (rules === undefined) return undefined;
    const key = `${direction}\0${policy.name}`;
    const known = compiledPolicy.get(key);
    if (known !== undefined) return known;
    const name = names.claim(direction === 'ingress' ? 'PI' : 'PE', policy.name);
    compiledPolicy.set(key, name);
    const body: Rule[] = [];
    for (const rule of rules) body.push(...compileRule(policy.name, direction, rule, family, options, names, subChains));
    policyChains.push({ name, rules: body });
    return name;
  };

  // IPv6 neighbour discovery (router/neighbour solicitation and advertisement) is always
  // accepted, or a selected endpoint (a host, or a workload talking to its host) loses IPv6.
  const neighbourDiscovery: Rule[] =
    family === 6
      ? [133, 134, 135, 136].map((type) => ({
          matches: [{ kind: 'protocol', protocol: ICMPV6 }, { kind: 'icmpv6Type', type }],
          target: { kind: 'accept' },
        }))
      : [];
  const clearAllow: Rule = { matches: [], target: { kind: 'setMark', value: 0, mask: marks.allow } };
  const endpointChain = (kind: ChainKind, endpoint: string, policyNames: readonly string[], direction: Direction): Chain | undefined => {
    const chains: string[] = [];
    for (const policyName of policyNames) {
      const policy = policies.get(policyName);
      if (policy === undefined) throw new NotSupportedError(`endpoint ${endpoint}: unknown policy ${policyName}`);
      const chain = policyChain(policy, direction);
      if (chain !== undefined) chains.push(chain);
    }
    if (chains.length === 0) return undefined;
    const rules: Rule[] = [established, ...neighbourDiscovery, invalid, clearAllow];
    for (const chain of chains) {
      rules.push({ matches: [], target: { kind: 'jump', chain } });
      rules.push({ matches: [{ kind: 'mark', value: marks.allow, mask: marks.allow }], target: { kind: 'return' } });
    }
    rules.push({ matches: [], target: { kind: 'drop' } });
    return { name: names.claim(kind, endpoint), rules };
  };

  const dispatch: Record<BuiltinChain, Rule[]> = { INPUT: [], FORWARD: [], OUTPUT: [] };
  const endpointChains: Chain[] = [];
  const toWorkload: Rule[] = [];
  const fromWorkloadToHost: Rule[] = [];
  for (const endpoint of state.endpoints) {
    if (endpoint.host) {
      const input = endpointChain('TH', endpoint.name, endpoint.ingressPolicies, 'ingress');
      if (input) {
        endpointChains.push(input);
        dispatch.INPUT.push({ matches: [{ kind: 'inInterface', name: 'lo', negate: true }], target: { kind: 'jump', chain: input.name } });
      }
      const output = endpointChain('FH', endpoint.name, endpoint.egressPolicies, 'egress');
      if (output) {
        endpointChains.push(output);
        dispatch.OUTPUT.push({ matches: [{ kind: 'outInterface', name: 'lo', negate: true }], target: { kind: 'jump', chain: output.name } });
      }
      continue;
    }
    const iface = endpoint.interface;
    if (iface === undefined) continue;
    if (!validInterfaceName(iface)) {
      throw new NotSupportedError(`endpoint ${endpoint.name}: interface ${JSON.stringify(iface)} is not a Linux interface name (1-15 characters, no '/', ':', quotes or spaces)`);
    }
    const fromWorkload = endpointChain('FW', endpoint.name, endpoint.egressPolicies, 'egress');
    if (fromWorkload) {
      endpointChains.push(fromWorkload);
      // From the workload to anywhere: forwarded, or to the host itself (INPUT).
      const fromIface: Rule = { matches: [{ kind: 'inInterface', name: iface }], target: { kind: 'jump', chain: fromWorkload.name } };
      dispatch.FORWARD.push(fromIface);
      fromWorkloadToHost.push(fromIface);
    }
    const toW = endpointChain('TW', endpoint.name, endpoint.ingressPolicies, 'ingress');
    if (toW) {
      endpointChains.push(toW);
      toWorkload.push({ matches: [{ kind: 'outInterface', name: iface }], target: { kind: 'jump', chain: toW.name } });
    }
  }
  // A workload's egress comes before the host's ingress on INPUT; both must allow.
  dispatch.INPUT.unshift(...fromWorkloadToHost);
  // Traffic to a workload is forwarded, or sent by the host itself (OUTPUT).
  dispatch.FORWARD.push(...toWorkload);
  dispatch.OUTPUT.push(...toWorkload);

  const servers = state.dns.trustedServers.filter((server) => server.family === family);
  const endpointInterfaces = new Set(workloadInterfaces(state));
  const parser =
    options.dnsParserPath === undefined || servers.length === 0
      ? undefined
      : parserPlacement(servers, state.dns.interfaces ?? [], endpointInterfaces, options.dnsParserPath);
  const dispatchChains: Chain[] = (['INPUT', 'FORWARD', 'OUTPUT'] as const).map((builtin) => {
    const body = dispatch[builtin];
    const parse = parser === undefined ? [] : parser.dispatch(builtin);
    const rules: Rule[] =
      body.length === 0
        ? parse
        : [
            ...parse,
            clearAllow,
            ...body,
            { matches: [{ kind: 'mark', value: marks.allow, mask: marks.allow }], target: { kind: 'accept' } },
          ];
    return { name: DISPATCH_CHAINS[builtin], rules };
  });
  const allowChain: Chain = {
    name: ALLOW_CHAIN,
    rules: [{ matches: [], target: { kind: 'setMark', value: marks.allow, mask: marks.allow } }],
  };

  return {
    family,
    tables: [
      {
        name: 'filter',
        chains: [...dispatchChains, ...(parser?.chains ?? []), allowChain, ...endpointChains, ...policyChains, ...subChains],
        jumps: JUMPS,
      },
    ],
  };
}

/** Hands out chain names and refuses two objects that would share one (a hash collision). */
class ChainNames {
  private readonly owners = new Map<string, string>();
  claim(kind: ChainKind, name: string): string {
    const chain = objectChainName(kind, name);
    const owner = `${kind}:${name}`;
    const previous = this.owners.get(chain);
    if (previous !== undefined && previous !== owner) {
      throw new NotSupportedError(`chain name ${chain} would serve both ${previous} and ${owner}; rename one`);
    }
    this.owners.set(chain, owner);
    return chain;
  }
}

function compileRule(
  policy: string,
  direction: Direction,
  rule: CompiledRule,
  family: IpFamily,
  options: CompileOptions,
  names: ChainNames,
  subChains: Chain[],
): Rule[] {
  const where = `policy ${policy} ${direction}[${rule.index}]`;
  if (rule.family !== undefined && rule.family !== family) return [];
  if (rule.protocol === ICMP && family === 6) return [];
  if (rule.protocol === ICMPV6 && family === 4) return [];
  const source = peerForFamily(rule.source, family);
  const destination = peerForFamily(rule.destination, family);
  // Nets were given, none of this family: the rule cannot match this family.
  if (source === undefined || destination === undefined) return [];

  const hasPorts = [rule.source, rule.destination].some((p) => p.ports.length > 0 || p.notPorts.length > 0);
  let protocols: readonly (number | undefined)[] = [rule.protocol];
  if (hasPorts) {
    if (rule.protocol === undefined) protocols = [6, 17];
    else if (!PORT_PROTOCOLS.has(rule.protocol)) {
      throw new NotSupportedError(`${where}: ports need TCP, UDP, SCTP, DCCP or UDPLite, not protocol ${rule.protocol}`);
    }
  }

  const sideMatches = (side: 'source' | 'destination', peer: FamilyPeer): { nets: (Match | undefined)[]; ports: (Match | undefined)[]; fixed: Match[] } => {
    const nets: (Match | undefined)[] = peer.nets.length === 0 ? [undefined] : peer.nets.map((cidr) => ({ kind: 'address', side, cidr, negate: false }));
    const ports: (Match | undefined)[] =
      peer.ports.length === 0 ? [undefined] : chunkPorts(peer.ports).map((ranges) => ({ kind: 'ports', side, ranges, negate: false }));
    const fixed: Match[] = chunkPorts(peer.notPorts).map((ranges) => ({ kind: 'ports', side, ranges, negate: true }));
    if (peer.notNets.length === 1 && !needsSubChain(source, destination)) {
      fixed.unshift({ kind: 'address', side, cidr: peer.notNets[0] as string, negate: true });
    }
    return { nets, ports, fixed };
  };
  const src = sideMatches('source', source);
  const dst = sideMatches('destination', destination);
  const domain: Match[] =
    rule.destination.domainSetId === undefined
      ? []
      : [{ kind: 'bpfPinned', path: options.domainMatches.matchProgramPath(rule.destination.domainSetId) }];

  const ruleName = `${direction === 'ingress' ? 'i' : 'e'}${rule.index}`;
  const verdict = actionTarget(rule, policy, ruleName);
  const { marks } = options;

  let target: Target = verdict;
  const out: Rule[] = [];
  let after: Rule | undefined;
  if (needsSubChain(source, destination)) {
    // Several notNets: the sub-chain RETURNs for each excluded net and otherwise marks the
    // packet "matched"; the policy chain then applies the verdict to marked packets.
    const chain = names.claim('NN', `${policy}.${ruleName}`);
    subChains.push({
      name: chain,
      rules: [
        ...source.notNets.map((cidr): Rule => ({ matches: [{ kind: 'address', side: 'source', cidr, negate: false }], target: { kind: 'return' } })),
        ...destination.notNets.map((cidr): Rule => ({ matches: [{ kind: 'address', side: 'destination', cidr, negate: false }], target: { kind: 'return' } })),
        { matches: [], target: { kind: 'setMark', value: marks.match, mask: marks.match } },
      ],
    });
    out.push({ matches: [], target: { kind: 'setMark', value: 0, mask: marks.match } });
    target = { kind: 'jump', chain };
    after = { matches: [{ kind: 'mark', value: marks.match, mask: marks.match }], target: verdict };
  }

  for (const protocol of protocols) {
    for (const sNet of src.nets) {
      for (const dNet of dst.nets) {
        for (const sPorts of src.ports) {
          for (const dPorts of dst.ports) {
            // The order iptables-save prints: addresses, protocol, then the match modules.
            const matches: Match[] = [];
            if (sNet) matches.push(sNet);
            matches.push(...src.fixed.filter((m) => m.kind === 'address'));
            if (dNet) matches.push(dNet);
            matches.push(...dst.fixed.filter((m) => m.kind === 'address'));
            if (protocol !== undefined) matches.push({ kind: 'protocol', protocol });
            if (sPorts) matches.push(sPorts);
            matches.push(...src.fixed.filter((m) => m.kind === 'ports'));
            if (dPorts) matches.push(dPorts);
            matches.push(...dst.fixed.filter((m) => m.kind === 'ports'));
            matches.push(...domain);
            out.push({ matches, target });
          }
        }
      }
    }
  }
  if (after) out.push(after);
  return out;
}

function actionTarget(rule: CompiledRule, policy: string, ruleName: string): Target {
  switch (rule.action) {
    case 'allow':
      return { kind: 'goto', chain: ALLOW_CHAIN };
    case 'deny':
      return { kind: 'drop' };
    case 'log':
      return { kind: 'log', prefix: logPrefix(policy, ruleName) };
    case 'pass':
      return { kind: 'return' };
  }
}

interface FamilyPeer {
  readonly nets: readonly string[];
  readonly notNets: readonly string[];
  readonly ports: readonly PortRange[];
  readonly notPorts: readonly PortRange[];
}

/** The peer restricted to one family; undefined when it lists nets, none of this family. */
function peerForFamily(peer: CompiledPeer, family: IpFamily): FamilyPeer | undefined {
  const of = (cidrs: readonly Cidr[]): string[] => cidrs.filter((c) => c.family === family).map((c) => c.text);
  const nets = of(peer.nets);
  if (peer.nets.length > 0 && nets.length === 0) return undefined;
  return { nets, notNets: of(peer.notNets), ports: peer.ports, notPorts: peer.notPorts };
}

/**
 * iptables takes one `-s` and one `-d` per rule, so a side can carry its notNet as `! -s/-d`
 * only when it has exactly one and no nets; otherwise the notNets go to an `NN` sub-chain.
 */
function needsSubChain(source: FamilyPeer, destination: FamilyPeer): boolean {
  const fits = (p: FamilyPeer): boolean => p.notNets.length === 0 || (p.notNets.length === 1 && p.nets.length === 0);
  return !fits(source) || !fits(destination);
}

/** Splits port ranges into groups that fit one multiport match (a range counts two). */
export function chunkPorts(ranges: readonly PortRange[]): PortRange[][] {
  const chunks: PortRange[][] = [];
  let current: PortRange[] = [];
  let used = 0;
  for (const range of ranges) {
    const cost = range.first === range.last ? 1 : 2;
    if (used + cost > MAX_MULTIPORT_PORTS) {
      chunks.push(current);
      current = [];
      used = 0;
    }
    current.push(range);
    used += cost;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/**
 * Where the parser's rules go. With no interfaces listed (the default: every interface), first
 * in each dispatch chain (before any established/related accept). With dns.interfaces listed,
 * the packets the tc dataplanes' parser hooks see (bpf-parser's parserHooks): what comes in by
 * a listed interface (INPUT, FORWARD); what goes out by a listed interface that is not a
 * workload's (FORWARD: the node forwards a query upstream) or by any listed one from the node
 * itself (OUTPUT: its own queries, and a trusted server on the node answering workloads — tc
 * watches the workloads' egress only then, and in OUTPUT only such a server's packets match);
 * `lo` in INPUT always (a trusted server on the node answers the node's own lookups over it;
 * other loopback traffic matches no server rule), never in OUTPUT (loopback crosses OUTPUT,
 * then INPUT). The rules sit in PARSER_CHAIN, and each dispatch chain first jumps to its
 * PARSER_INTERFACE_CHAINS chain, which sends such a packet there with a goto — so a packet
 * forwarded between two listed interfaces is parsed once, and the goto's return lands back in
 * the dispatch chain.
 */
function parserPlacement(
  servers: readonly TrustedServer[],
  interfaces: readonly string[],
  endpointInterfaces: ReadonlySet<string>,
  programPath: string,
): { dispatch: (builtin: BuiltinChain) => Rule[]; chains: Chain[] } {
  if (interfaces.length === 0) return { dispatch: (builtin) => parserRules(servers, builtin, programPath), chains: [] };
  const to = (match: Match): Rule => ({ matches: [match], target: { kind: 'goto', chain: PARSER_CHAIN } });
  const listed = [...new Set(interfaces)];
  const unmatchable = listed.find((name) => !validInterfaceName(name));
  if (unmatchable !== undefined) throw new NotSupportedError(`dns.interfaces: ${JSON.stringify(unmatchable)} is not an interface name iptables can match`);
  const routes: Record<BuiltinChain, Rule[]> = {
    INPUT: [...new Set([...listed, 'lo'])].map((name) => to({ kind: 'inInterface', name })),
    FORWARD: listed.flatMap((name) => [
      to({ kind: 'inInterface', name }),
      ...(endpointInterfaces.has(name) ? [] : [to({ kind: 'outInterface', name })]),
    ]),
    OUTPUT: listed.filter((name) => name !== 'lo').map((name) => to({ kind: 'outInterface', name })),
  };
  const builtins = ['INPUT', 'FORWARD', 'OUTPUT'] as const;
  return {
    dispatch: (builtin) => (routes[builtin].length === 0 ? [] : [{ matches: [], target: { kind: 'jump', chain: PARSER_INTERFACE_CHAINS[builtin] } }]),
    chains: [
      { name: PARSER_CHAIN, rules: parserRules(servers, undefined, programPath) },
      ...builtins.filter((b) => routes[b].length > 0).map((b) => ({ name: PARSER_INTERFACE_CHAINS[b], rules: routes[b] })),
    ],
  };
}

/**
 * The rules that run the DNS parser on queries to and responses from each trusted server.
 * Every packet crosses exactly one of INPUT, FORWARD, OUTPUT once — except loopback traffic,
 * which crosses OUTPUT and then INPUT, so in OUTPUT (`builtin`) loopback is left to INPUT and
 * the parser sees each packet once. `builtin` undefined: the rules of PARSER_CHAIN, whose
 * callers chose the interfaces.
 */
function parserRules(servers: readonly TrustedServer[], builtin: BuiltinChain | undefined, programPath: string): Rule[] {
  const rules: Rule[] = [];
  const notLoopback: Match[] = builtin === 'OUTPUT' ? [{ kind: 'outInterface', name: 'lo', negate: true }] : [];
  const parser: Match = { kind: 'bpfPinned', path: programPath };
  for (const server of servers) {
    const cidr = `${server.address}/${server.family === 4 ? 32 : 128}`;
    const ports = [{ first: server.port, last: server.port }];
    for (const protocol of [17, 6]) {
      for (const [side, portSide] of [['destination', 'destination'], ['source', 'source']] as const) {
        rules.push({
          matches: [
            { kind: 'address', side, cidr, negate: false },
            ...notLoopback,
            { kind: 'protocol', protocol },
            { kind: 'ports', side: portSide, ranges: ports, negate: false },
            parser,
          ],
          target: { kind: 'none' },
        });
      }
    }
  }
  return rules;
}

/** What the kernel accepts as an interface name (dev_valid_name), and iptables can quote. */
export function validInterfaceName(name: string): boolean {
  return name.length >= 1 && name.length <= 15 && name !== '.' && name !== '..' && !/[/:\s"'\\]/.test(name);
}
