// The pure compiler of the ebpf dataplane: DesiredState → the contents of the policy maps
// (hooks, rules, net lists), readable and generation-free. `encode.ts` turns them into the
// bytes of one generation; `render()` prints them as JSON. No I/O here.
import {
  NotSupportedError,
  workloadInterfaces,
  type Cidr,
  type CompiledPeer,
  type CompiledRule,
  type DesiredState,
  type Direction,
  type PortRange,
  type RuleAction,
} from '@dnsplane/core';

/** Limits of policy_maps.h (the kernel side refuses nothing: the compiler does, before any write). */
export const POLICY_LIMITS = {
  rulesPerGeneration: 16384,
  rulesPerHook: 4096,
  portRanges: 8,
  hooks: 4096 / 2,
  netLists: (1 << 24) - 1,
  netEntries: 65536 / 2,
} as const;

/** The interface name a host endpoint's hooks stand for: every node interface that is not a workload's (lo excluded). */
export const HOST_INTERFACES = '*host*';

export type TcDirection = 'ingress' | 'egress';

export interface HookTable {
  /** Workload host-side interface, or HOST_INTERFACES. */
  readonly interface: string;
  readonly tcDirection: TcDirection;
  /** The endpoint's direction enforced here (workload: tc ingress = egress; host: the same). */
  readonly direction: Direction;
  readonly endpoint: string;
  readonly endpointIndex: number;
  /** Policies apply in this direction: rules, then default deny. */
  readonly selected: boolean;
  /** Passing packets open connection-table entries (always, for an endpoint we enforce on). */
  readonly track: boolean;
  /**
   * UDP DNS with a trusted server opens no connection-table entry at this hook (nor is one
   * looked up): the endpoint's ingress is unselected, so the answer passes without one.
   */
  readonly dnsUntracked: boolean;
  readonly host: boolean;
  /** Index of the hook's first rule in the generation's rule array. */
  readonly first: number;
  readonly count: number;
  readonly policies: readonly string[];
}

export interface PortLists {
  readonly source: readonly PortRange[];
  readonly sourceNot: readonly PortRange[];
  readonly destination: readonly PortRange[];
  readonly destinationNot: readonly PortRange[];
}

export interface RuleTable {
  /** Slot in the generation's rule array. */
  readonly slot: number;
  readonly policy: string;
  readonly policyIndex: number;
  readonly direction: Direction;
  readonly rule: number;
  readonly action: RuleAction;
  readonly protocol?: number;
  readonly family?: 4 | 6;
  /** Pass: index (relative to the hook's first rule) of the next policy's first rule. */
  readonly passTarget: number;
  readonly ports: PortLists;
  /** Net list ids (0: none). */
  readonly sourceNets: number;
  readonly sourceNotNets: number;
  readonly destinationNets: number;
  readonly destinationNotNets: number;
  readonly destinationDomainSet: number;
}

export interface NetList {
  readonly id: number;
  readonly cidrs: readonly string[];
}

export interface PolicyTables {
  readonly hooks: readonly HookTable[];
  readonly rules: readonly RuleTable[];
  readonly netLists: readonly NetList[];
  /** Domain sets the rules reference (ids). */
  readonly domainSets: readonly number[];
  /** Every workload interface that is an endpoint's (host hooks skip them). */
  readonly workloadInterfaces: readonly string[];
}

class NetListRegistry {
  readonly #byKey = new Map<string, NetList>();

  id(cidrs: readonly Cidr[]): number {
    if (cidrs.length === 0) return 0;
    const texts = [...new Set(cidrs.map((c) => c.text))].sort();
    const key = texts.join(',');
    let list = this.#byKey.get(key);
    if (!list) {
      if (this.#byKey.size >= POLICY_LIMITS.netLists) throw new NotSupportedError(`the ebpf dataplane holds at most ${POLICY_LIMITS.netLists} distinct net lists`);
      list = { id: this.#byKey.size + 1, cidrs: texts };
      this.#byKey.set(key, list);
    }
    return list.id;
  }

  lists(): NetList[] {
    return [...this.#byKey.values()];
  }
}

function portList(ranges: readonly PortRange[], what: string): readonly PortRange[] {
  if (ranges.length > POLICY_LIMITS.portRanges) {
    throw new NotSupportedError(`${what}: the ebpf dataplane matches at most ${POLICY_LIMITS.portRanges} port ranges per list, the rule has ${ranges.length}`);
  }
  return ranges.map((r) => ({ first: r.first, last: r.last }));
}

function peerPorts(source: CompiledPeer, destination: CompiledPeer, what: string): PortLists {
  return {
    source: portList(source.ports, `${what} source.ports`),
    sourceNot: portList(source.notPorts, `${what} source.notPorts`),
    destination: portList(destination.ports, `${what} destination.ports`),
    destinationNot: portList(destination.notPorts, `${what} destination.notPorts`),
  };
}

/**
 * Compiles the desired state into the policy maps' contents. An endpoint with policies in
 * either direction gets both hooks (the unselected one only tracks connections, so replies
 * to what the selected side allowed pass, like `ct state established` first in nftables).
 * Where its ingress is unselected, its UDP DNS with trusted servers goes untracked (the
 * answers pass the unselected hook without an entry), as nftables' untrackDns does.
 * NotSupportedError (before anything is written) when the state exceeds the maps.
 */
export function compilePolicyTables(state: DesiredState): PolicyTables {
  const policies = new Map(state.policies.map((p, index) => [p.name, { policy: p, index }]));
  const nets = new NetListRegistry();
  const hooks: HookTable[] = [];
  const rules: RuleTable[] = [];
  const domainSets = new Set<number>();

  state.endpoints.forEach((endpoint, endpointIndex) => {
    if (endpoint.ingressPolicies.length === 0 && endpoint.egressPolicies.length === 0) return;
    const host = endpoint.host;
    const iface = host ? HOST_INTERFACES : endpoint.interface;
    if (iface === undefined) return;
    for (const direction of ['egress', 'ingress'] as const) {
      // Workload: what it sends enters the host at the interface's tc ingress. Host: the node's own.
      const tcDirection: TcDirection = host ? direction : direction === 'egress' ? 'ingress' : 'egress';
      const names = direction === 'egress' ? endpoint.egressPolicies : endpoint.ingressPolicies;
      const first = rules.length;
      const hookRules: Array<Omit<RuleTable, 'passTarget' | 'slot'> & { policyEnd: number }> = [];
      for (const name of names) {
        const entry = policies.get(name);
        const list = entry?.policy[direction];
        if (!entry || !list) continue;
        const policyStart = hookRules.length;
        const policyEnd = policyStart + list.length;
        list.forEach((rule: CompiledRule) => {
          const what = `policy ${name} ${direction}[${rule.index}]`;
          const domain = rule.destination.domainSetId;
          if (domain !== undefined) domainSets.add(domain);
          hookRules.push({
            policy: name,
            policyIndex: entry.index,
            direction,
            rule: rule.index,
            action: rule.action,
            ...(rule.protocol !== undefined ? { protocol: rule.protocol } : {}),
            ...(rule.family !== undefined ? { family: rule.family } : {}),
            policyEnd,
            ports: peerPorts(rule.source, rule.destination, what),
            sourceNets: nets.id(rule.source.nets),
            sourceNotNets: nets.id(rule.source.notNets),
            destinationNets: nets.id(rule.destination.nets),
            destinationNotNets: nets.id(rule.destination.notNets),
            destinationDomainSet: domain ?? 0,
          });
        });
      }
      if (hookRules.length > POLICY_LIMITS.rulesPerHook) {
        throw new NotSupportedError(`endpoint ${endpoint.name} ${direction}: the ebpf dataplane evaluates at most ${POLICY_LIMITS.rulesPerHook} rules per endpoint and direction, the policies give ${hookRules.length}`);
      }
      for (const { policyEnd, ...rule } of hookRules) {
        rules.push({ ...rule, slot: rules.length, passTarget: policyEnd });
      }
      hooks.push({
        interface: iface,
        tcDirection,
        direction,
        endpoint: endpoint.name,
        endpointIndex,
        selected: names.length > 0,
        track: true,
        dnsUntracked: endpoint.ingressPolicies.length === 0,
        host,
        first,
        count: hookRules.length,
        policies: [...names],
      });
    }
  });
  if (state.endpoints.filter((e) => e.host && (e.ingressPolicies.length > 0 || e.egressPolicies.length > 0)).length > 1) {
    throw new NotSupportedError('the ebpf dataplane enforces at most one selected host endpoint (its hooks are every node interface)');
  }
  if (rules.length > POLICY_LIMITS.rulesPerGeneration) {
    throw new NotSupportedError(`the ebpf dataplane holds at most ${POLICY_LIMITS.rulesPerGeneration} rules over all endpoints and directions, the policies give ${rules.length}`);
  }
  if (hooks.length > POLICY_LIMITS.hooks) throw new NotSupportedError(`the ebpf dataplane holds at most ${POLICY_LIMITS.hooks} endpoint hooks`);
  const netLists = nets.lists();
  const netEntries = netLists.reduce((n, l) => n + l.cidrs.length, 0);
  if (netEntries > POLICY_LIMITS.netEntries) throw new NotSupportedError(`the ebpf dataplane holds at most ${POLICY_LIMITS.netEntries} net entries, the policies give ${netEntries}`);
  return { hooks, rules, netLists, domainSets: [...domainSets].sort((a, b) => a - b), workloadInterfaces: workloadInterfaces(state) };
}
