// A DNS resolver on the node itself (a node-local cache such as NodeLocal DNSCache, dnsmasq or
// unbound listening on one of the node's addresses). Its answers to the workloads leave through
// tc egress of their interfaces and pass no tc ingress, so the tc dataplanes attach the parser
// there too when one of the trusted servers is the node's own address (parser-hooks.ts). The
// parser parses only the responses the node sends at tc egress (a forwarded one was parsed
// where it came in). The node's own lookups through it travel over lo.
import { networkInterfaces } from 'node:os';
import { canonicalAddress, type TrustedServer } from '@dnsplane/core';

/** The addresses of this process's network namespace (every interface, lo included), canonical text. */
export function nodeAddresses(): ReadonlySet<string> {
  const addresses = new Set<string>();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) {
      const address = canonicalAddress(entry.address.split('%')[0]!);
      if (address !== undefined) addresses.add(address);
    }
  }
  return addresses;
}

/**
 * The trusted servers on the node: an address in `addresses` (the node's), or a loopback one
 * (127.0.0.0/8, ::1 — systemd-resolved's 127.0.0.53 is no interface's address).
 */
export function trustedServersOnNode(servers: readonly TrustedServer[], addresses: ReadonlySet<string>): TrustedServer[] {
  return servers.filter((server) => addresses.has(canonicalAddress(server.address) ?? server.address) || isLoopbackAddress(server.address));
}

/** 127.0.0.0/8 or ::1: a server there answers only the node's own processes (over lo), never a workload. */
export function isLoopbackAddress(address: string): boolean {
  const canonical = canonicalAddress(address) ?? address;
  return canonical.startsWith('127.') || canonical === '::1';
}
