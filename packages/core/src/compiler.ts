// The policy compiler: validated config + resources → DesiredState. Pure: no I/O, no clock,
// deterministic (the same inputs give byte-identical output, whatever their order).
//
// The resource schemas (resources.ts) have already canonicalised the input: selectors are
// ASTs, nets canonical CIDRs, ports ranges, protocols numbers, domains DomainPatterns, and
// `spec.types` holds the directions the policy applies to. On top of that the compiler:
// - sorts policies by (order, name) — the evaluation order; a policy without an order comes
//   after every ordered one (Calico);
// - compiles a policy's rules for each direction in `spec.types` (a direction with no rules
//   applies and allows nothing); other directions stay absent;
// - gives every endpoint the names of the policies whose selector matches its labels, per
//   direction; an endpoint selected by no policy has empty lists and stays untouched;
// - turns each distinct list of domain patterns (canonical, sorted, de-duplicated) into one
//   DomainSet with a stable id (domain-set-id.ts) that rules reference;
// - fixes a rule's family when its protocol (ICMP → 4, ICMPv6 → 6) or its nets allow only one,
//   and then drops nets of the other family (they could never match);
// - keeps actions as written (allow/deny end evaluation, log continues, pass skips to the next
//   policy): drivers implement the semantics documented in desired-state.ts.
// A rule that can never match (its protocol and nets share no family) is an InvalidInputError.
import type {
  Cidr,
  CompiledEndpoint,
  CompiledPeer,
  CompiledPolicy,
  CompiledRule,
  DesiredState,
  Direction,
  DnsSettings,
  DomainSet,
  IpFamily,
  RuleAction,
  TrustedServer,
} from './desired-state.js';
import type { DnsplaneConfig } from './config.js';
import type { DomainPattern } from './domain-pattern-model.js';
import { assignDomainSetIds, domainSetKey, domainSetName } from './domain-set-id.js';
import { InvalidInputError, type InputProblem } from './errors.js';
import type { EndpointResource, PolicyResource, PolicyRule, RulePeer } from './resources.js';
import { matchesSelector } from './selector.js';

export interface CompilerInputs {
  readonly config: Pick<DnsplaneConfig, 'dns'>;
  readonly policies: readonly PolicyResource[];
  readonly endpoints: readonly EndpointResource[];
}

const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;

const ACTIONS: Readonly<Record<PolicyRule['action'], RuleAction>> = {
  Allow: 'allow',
  Deny: 'deny',
  Log: 'log',
  Pass: 'pass',
};

const DIRECTIONS: readonly { readonly direction: Direction; readonly type: 'Ingress' | 'Egress' }[] = [
  { direction: 'ingress', type: 'Ingress' },
  { direction: 'egress', type: 'Egress' },
];

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Evaluation order: (order, name); policies without an order last. */
export function comparePolicies(a: PolicyResource, b: PolicyResource): number {
  const orderA = a.spec.order ?? Number.POSITIVE_INFINITY;
  const orderB = b.spec.order ?? Number.POSITIVE_INFINITY;
  if (orderA !== orderB) return orderA < orderB ? -1 : 1;
  return byText(a.metadata.name, b.metadata.name);
}

/** The directions a policy applies to, ingress first. */
export function appliedDirections(policy: PolicyResource): Direction[] {
  return DIRECTIONS.filter(({ type }) => policy.spec.types.includes(type)).map(({ direction }) => direction);
}

export function compile(inputs: CompilerInputs): DesiredState {
  const problems: InputProblem[] = [];
  const policies = [...inputs.policies].sort(comparePolicies);

  // Domain sets first: ids depend on the whole collection of distinct pattern lists.
  const patternLists = new Map<string, DomainPattern[]>();
  for (const policy of policies) {
    for (const rule of policy.spec.egress) {
      const domains = rule.destination.domains;
      if (domains === undefined || domains.length === 0) continue;
      const key = domainSetKey(domains.map((p) => p.text));
      if (patternLists.has(key)) continue;
      const unique = new Map(domains.map((p) => [p.text, p] as const));
      patternLists.set(key, [...unique.values()].sort((a, b) => byText(a.text, b.text)));
    }
  }
  const ids = assignDomainSetIds(patternLists.keys());
  const domainSetIdOf = (domains: readonly DomainPattern[] | undefined): number | undefined =>
    domains === undefined || domains.length === 0 ? undefined : ids.get(domainSetKey(domains.map((p) => p.text)));
  const domainSets: DomainSet[] = [...patternLists.entries()]
    .map(([key, patterns]) => {
      const id = ids.get(key) as number;
      return { id, name: domainSetName(id), patterns };
    })
    .sort((a, b) => a.id - b.id);

  const compiledPolicies: CompiledPolicy[] = policies.map((policy) => {
    const compiled: { -readonly [K in keyof CompiledPolicy]: CompiledPolicy[K] } = {
      name: policy.metadata.name,
      order: policy.spec.order ?? Number.MAX_VALUE,
    };
    for (const direction of appliedDirections(policy)) {
      compiled[direction] = policy.spec[direction].map((rule, index) =>
        compileRule(rule, index, domainSetIdOf, {
          file: `Policy/${policy.metadata.name}`,
          field: `spec.${direction}[${index}]`,
          problems,
        }),
      );
    }
    return compiled;
  });

  const endpoints: CompiledEndpoint[] = [...inputs.endpoints]
    .sort((a, b) => byText(a.metadata.name, b.metadata.name))
    .map((endpoint) => compileEndpoint(endpoint, policies));

  if (problems.length > 0) throw new InvalidInputError(problems);
  return { domainSets, policies: compiledPolicies, endpoints, dns: compileDns(inputs.config.dns) };
}

function compileEndpoint(endpoint: EndpointResource, sortedPolicies: readonly PolicyResource[]): CompiledEndpoint {
  const labels = Object.fromEntries(
    Object.entries(endpoint.metadata.labels ?? {}).sort(([a], [b]) => byText(a, b)),
  );
  const selected = sortedPolicies.filter((policy) => matchesSelector(policy.spec.selector, labels));
  const namesFor = (type: 'Ingress' | 'Egress'): string[] =>
    selected.filter((policy) => policy.spec.types.includes(type)).map((policy) => policy.metadata.name);
  const addresses = new Map<string, Cidr>();
  for (const cidr of endpoint.spec.addresses) addresses.set(cidr.text, { family: cidr.family, text: cidr.text });
  return {
    name: endpoint.metadata.name,
    labels,
    ...(endpoint.spec.interface === undefined ? {} : { interface: endpoint.spec.interface }),
    host: endpoint.spec.host,
    addresses: sortCidrs([...addresses.values()]),
    ingressPolicies: namesFor('Ingress'),
    egressPolicies: namesFor('Egress'),
  };
}

interface Where {
  readonly file: string;
  readonly field: string;
  readonly problems: InputProblem[];
}

function compileRule(
  rule: PolicyRule,
  index: number,
  domainSetIdOf: (domains: readonly DomainPattern[] | undefined) => number | undefined,
  where: Where,
): CompiledRule {
  const protocol = rule.protocol;
  // The family: the protocol's, narrowed by the families of each side's nets.
  let families: IpFamily[] = protocol === IPPROTO_ICMP ? [4] : protocol === IPPROTO_ICMPV6 ? [6] : [4, 6];
  for (const side of [rule.source, rule.destination]) {
    if (side.nets.length === 0) continue;
    families = families.filter((family) => side.nets.some((net) => net.family === family));
  }
  if (families.length === 0) {
    where.problems.push({
      file: where.file,
      field: where.field,
      reason: 'the rule can never match: its protocol and nets do not share an IP family',
    });
  }
  const family = families.length === 1 ? families[0] : undefined;
  const peer = (side: RulePeer, withDomains: boolean): CompiledPeer => {
    const keep = (cidrs: readonly Cidr[]): Cidr[] =>
      sortCidrs(dedupeCidrs(cidrs).filter((cidr) => family === undefined || cidr.family === family));
    const domainSetId = withDomains ? domainSetIdOf(side.domains) : undefined;
    return {
      nets: keep(side.nets),
      notNets: keep(side.notNets),
      ports: mergePorts(side.ports),
      notPorts: mergePorts(side.notPorts),
      ...(domainSetId === undefined ? {} : { domainSetId }),
    };
  };
  return {
    index,
    action: ACTIONS[rule.action],
    ...(protocol === undefined ? {} : { protocol }),
    ...(family === undefined ? {} : { family }),
    source: peer(rule.source, false),
    destination: peer(rule.destination, true),
  };
}

function dedupeCidrs(cidrs: readonly Cidr[]): Cidr[] {
  const unique = new Map<string, Cidr>();
  for (const cidr of cidrs) unique.set(cidr.text, { family: cidr.family, text: cidr.text });
  return [...unique.values()];
}

/** IPv4 first, then by text. */
function sortCidrs(cidrs: Cidr[]): Cidr[] {
  return cidrs.sort((a, b) => a.family - b.family || byText(a.text, b.text));
}

/** Sorted, with overlapping and adjacent ranges merged. */
function mergePorts(ranges: readonly { readonly first: number; readonly last: number }[]): { first: number; last: number }[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first || a.last - b.last);
  const merged: { first: number; last: number }[] = [];
  for (const range of sorted) {
    const previous = merged[merged.length - 1];
    if (previous && range.first <= previous.last + 1) previous.last = Math.max(previous.last, range.last);
    else merged.push({ first: range.first, last: range.last });
  }
  return merged;
}

/** Trusted servers (parsed by the config schema) and the parser's interfaces: de-duplicated and sorted. */
function compileDns(dns: DnsplaneConfig['dns']): DnsSettings {
  const servers = new Map<string, TrustedServer>();
  for (const server of dns.trustedServers) {
    servers.set(`${server.family}|${server.address}|${server.port}`, {
      family: server.family,
      address: server.address,
      port: server.port,
    });
  }
  return {
    trustedServers: [...servers.values()].sort(
      (a, b) => a.family - b.family || byText(a.address, b.address) || a.port - b.port,
    ),
    minTTL: dns.minTTL,
    extraTTL: dns.extraTTL,
    maxAddressesPerName: dns.maxAddressesPerName,
    interfaces: [...new Set(dns.interfaces)].sort(byText),
  };
}
