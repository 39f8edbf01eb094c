// The config and policy the lab tests and the latency benchmark run the driver with:
// client1 may ask dnsmasq (UDP 53) and reach *.fresh.lab.test and www.lab.test on TCP 80.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Lab, LabProcess } from '../../../../test/lab/lab.js';

/** client1's host-side interface (where the marker goes). */
export function clientInterface(lab: Lab): string {
  const endpoint = lab.endpoints['client1'];
  if (endpoint === undefined) throw new Error(`lab ${lab.id} has no client1`);
  return endpoint.hostInterface;
}

export interface LabConfigOptions {
  readonly table: string;
  readonly pinRoot: string;
  /** nftables.mirrorDrainIntervalMs (default: the config's default). */
  readonly mirrorDrainIntervalMs?: number;
  /**
   * Also a host endpoint (the node) whose egress policy references client1's domain set on TCP
   * 80, denies other TCP and allows everything else (its DNS): the node's TCP connects are
   * marked by the connect marker, and the set wakes the mirror (the node's UDP meets the nft
   * set alone).
   */
  readonly hostEndpoint?: boolean;
  /** dns.interfaces (default: none listed, every interface watched). */
  readonly dnsInterfaces?: readonly string[];
}

/** `dir`/dnsplane.yaml for the nftables driver in `lab`, reading `dir`/policy.yaml; returns its path. */
export async function writeDriverConfig(lab: Lab, dir: string, names: Omit<LabConfigOptions, 'hostEndpoint'>): Promise<string> {
  const config = join(dir, 'dnsplane.yaml');
  await writeFile(
    config,
    [
      'dataplane: nftables',
      `dns: { trustedServers: ${JSON.stringify(lab.trustedServers)}, minTTL: 30, extraTTL: 10${
        names.dnsInterfaces === undefined ? '' : `, interfaces: ${JSON.stringify(names.dnsInterfaces)}`
      } }`,
      'resources: ["./policy.yaml"]',
      `statePath: ${join(dir, 'state.json')}`,
      `bpf: { pinRoot: ${names.pinRoot} }`,
      `nftables: { table: ${names.table}, markMask: "0x00ff0000"${
        names.mirrorDrainIntervalMs === undefined ? '' : `, mirrorDrainIntervalMs: ${names.mirrorDrainIntervalMs}`
      } }`,
    ].join('\n'),
  );
  return config;
}

/** Stops the driver, then — whatever happened — deletes its table, its pin root and `dir`. */
export async function removeDriverLeftovers(lab: Lab, driver: LabProcess | undefined, names: { readonly table: string; readonly pinRoot: string; readonly dir: string }): Promise<void> {
  try {
    await driver?.stop();
  } finally {
    await lab.exec('node', ['nft', 'delete', 'table', 'inet', names.table]).catch(() => undefined);
    await rm(names.pinRoot, { recursive: true, force: true });
    if (names.dir !== '') await rm(names.dir, { recursive: true, force: true });
  }
}

/**
 * The YAML lines of client1's egress policy and endpoint: DNS to dnsmasq allowed, then
 * `rules` (YAML lines of egress rules), then a Deny.
 */
export function client1EgressPolicy(lab: Lab, name: string, rules: readonly string[]): string[] {
  const dnsmasq = lab.dnsServers.dnsmasq;
  return [
    'kind: Policy',
    `metadata: { name: ${name} }`,
    'spec:',
    '  selector: app == "c1"',
    '  types: [Egress]',
    '  egress:',
    '    - action: Allow',
    '      protocol: UDP',
    `      destination: { nets: ["${dnsmasq.ipv4}/32", "${dnsmasq.ipv6}/128"], ports: [53] }`,
    ...rules,
    '    - action: Deny',
    '---',
    'kind: Endpoint',
    'metadata: { name: client1, labels: { app: c1 } }',
    `spec: { interface: ${clientInterface(lab)} }`,
  ];
}

export async function writeLabConfig(lab: Lab, dir: string, names: LabConfigOptions): Promise<string> {
  const config = await writeDriverConfig(lab, dir, names);
  await writeFile(
    join(dir, 'policy.yaml'),
    [
      ...client1EgressPolicy(lab, 'client1-egress', [
        '    - action: Allow',
        '      protocol: TCP',
        '      destination: { domains: ["*.fresh.lab.test", "www.lab.test"], ports: [80] }',
      ]),
      ...(names.hostEndpoint === true
        ? [
            '---',
            'kind: Policy',
            'metadata: { name: node-egress }',
            'spec:',
            '  selector: app == "node"',
            '  types: [Egress]',
            '  egress:',
            '    - action: Allow',
            '      protocol: TCP',
            '      destination: { domains: ["*.fresh.lab.test", "www.lab.test"], ports: [80] }',
            '    - action: Deny',
            '      protocol: TCP',
            '    - action: Allow',
            '---',
            'kind: Endpoint',
            'metadata: { name: node, labels: { app: node } }',
            'spec: { host: true }',
          ]
        : []),
    ].join('\n'),
  );
  return config;
}
