// The lab's names and addresses: a pure plan, computed from a lab id, that every other
// module reads. Nothing here touches the kernel.

/** The namespaces every lab has, besides its workload clients. */
export type InfrastructureRole = 'node' | 'dns' | 'web' | 'untrusted';

/** One veth pair: `hostInterface` lives in the node namespace, `eth0` in `namespace`. */
export interface LinkPlan {
  readonly namespace: string;
  /** Interface name inside the node namespace (≤ 15 characters). */
  readonly hostInterface: string;
  /** Interface name inside `namespace`. */
  readonly peerInterface: 'eth0';
  readonly ipv4Prefix: string; // e.g. 198.18.1.0/24
  readonly ipv6Prefix: string; // e.g. fd00:18:1::/64
  /** The node's (router's) side of the link: the default gateway of `namespace`. */
  readonly gateway: { readonly ipv4: string; readonly ipv6: string };
  /** Addresses configured on `eth0` inside `namespace` (first one is the primary). */
  readonly addresses: { readonly ipv4: readonly string[]; readonly ipv6: readonly string[] };
}

export interface ClientPlan extends LinkPlan {
  readonly name: string; // client1, client2, …
}

export interface TopologyPlan {
  readonly id: string;
  readonly namespaces: {
    readonly node: string;
    readonly dns: string;
    readonly web: string;
    readonly untrusted: string;
  };
  readonly clients: readonly ClientPlan[];
  readonly dnsLink: LinkPlan;
  readonly webLink: LinkPlan;
  readonly untrustedLink: LinkPlan;
  readonly dnsServers: {
    readonly dnsmasq: DnsServerAddresses;
    readonly unbound: DnsServerAddresses;
  };
  /** Prefixes the web namespace answers on (every address the zone hands out is inside). */
  readonly servicePrefixes: { readonly ipv4: string; readonly ipv6: string };
}

export interface DnsServerAddresses {
  readonly ipv4: string;
  readonly ipv6: string;
  readonly port: 53;
}

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const ID_PATTERN = /^[a-z0-9]{6}$/;

/** A fresh random 6-character lab id. */
export function randomLabId(random: () => number = Math.random): string {
  let id = '';
  for (let i = 0; i < 6; i += 1) id += ID_ALPHABET[Math.floor(random() * ID_ALPHABET.length)];
  return id;
}

export function isLabId(value: string): boolean {
  return ID_PATTERN.test(value);
}

/** Every lab namespace name starts with this, followed by the id and `-<role>`. */
export const NAMESPACE_PREFIX = 'dpl';

function link(
  namespace: string,
  hostInterface: string,
  subnet: number,
  hostCount: number,
): LinkPlan {
  if (hostInterface.length > 15) throw new Error(`interface name ${hostInterface} is longer than 15 characters`);
  const ipv4: string[] = [];
  const ipv6: string[] = [];
  for (let host = 2; host < 2 + hostCount; host += 1) {
    ipv4.push(`198.18.${subnet}.${host}`);
    ipv6.push(`fd00:18:${subnet}::${host}`);
  }
  return {
    namespace,
    hostInterface,
    peerInterface: 'eth0',
    ipv4Prefix: `198.18.${subnet}.0/24`,
    ipv6Prefix: `fd00:18:${subnet}::/64`,
    gateway: { ipv4: `198.18.${subnet}.1`, ipv6: `fd00:18:${subnet}::1` },
    addresses: { ipv4, ipv6 },
  };
}

/**
 * Plans a lab. Subnets: client N → 198.18.N.0/24 and fd00:18:N::/64 (N = 1…49), DNS → 53,
 * untrusted → 66, web link → 80. Zone addresses live in 198.19.0.0/16 and fd00:19::/64, all
 * routed to the web namespace.
 */
export function planTopology(id: string, clientCount: number): TopologyPlan {
  if (!isLabId(id)) throw new Error(`lab id ${JSON.stringify(id)} must be 6 characters of [a-z0-9]`);
  if (!Number.isInteger(clientCount) || clientCount < 1 || clientCount > 49) {
    throw new Error(`clients: ${clientCount} must be an integer from 1 to 49`);
  }
  const base = `${NAMESPACE_PREFIX}${id}`;
  const clients: ClientPlan[] = [];
  for (let n = 1; n <= clientCount; n += 1) {
    clients.push({ name: `client${n}`, ...link(`${base}-client${n}`, `${base}c${n}`, n, 1) });
  }
  const dnsLink = link(`${base}-dns`, `${base}dn`, 53, 2);
  return {
    id,
    namespaces: { node: `${base}-node`, dns: `${base}-dns`, web: `${base}-web`, untrusted: `${base}-untrusted` },
    clients,
    dnsLink,
    webLink: link(`${base}-web`, `${base}wb`, 80, 1),
    untrustedLink: link(`${base}-untrusted`, `${base}ut`, 66, 1),
    dnsServers: {
      dnsmasq: { ipv4: dnsLink.addresses.ipv4[0]!, ipv6: dnsLink.addresses.ipv6[0]!, port: 53 },
      unbound: { ipv4: dnsLink.addresses.ipv4[1]!, ipv6: dnsLink.addresses.ipv6[1]!, port: 53 },
    },
    servicePrefixes: { ipv4: '198.19.0.0/16', ipv6: 'fd00:19::/64' },
  };
}

/** All namespaces of a plan, node first. */
export function allNamespaces(plan: TopologyPlan): string[] {
  return [
    plan.namespaces.node,
    plan.namespaces.dns,
    plan.namespaces.web,
    plan.namespaces.untrusted,
    ...plan.clients.map((client) => client.namespace),
  ];
}

/** The id of a lab namespace name (`dpl<id>-<role>`), or undefined for any other name. */
export function labIdOfNamespace(name: string): string | undefined {
  const match = /^dpl([a-z0-9]{6})-[a-z0-9]+$/.exec(name);
  return match?.[1];
}
