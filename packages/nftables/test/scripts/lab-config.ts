// The config and policy the lab tests and the latency benchmark run the driver with:
// client1 may ask dnsmasq (UDP 53) and reach *.fresh.lab.test and www.lab.test on TCP 80.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Lab } from '../../../../test/lab/lab.js';

/** client1's host-side interface (where the marker goes). */
export function clientInterface(lab: Lab): string {
  const endpoint = lab.endpoints['client1'];
  if (endpoint === undefined) throw new Error(`lab ${lab.id} has no client1`);
  return endpoint.hostInterface;
}

export async function writeLabConfig(lab: Lab, dir: string, names: { table: string; pinRoot: string }): Promise<string> {
  const config = join(dir, 'dnsplane.yaml');
  const dnsmasq = lab.dnsServers.dnsmasq;
  await writeFile(
    config,
    [
      'dataplane: nftables',
      `dns: { trustedServers: ${JSON.stringify(lab.trustedServers)}, minTTL: 30, extraTTL: 10 }`,
      'resources: ["./policy.yaml"]',
      `statePath: ${join(dir, 'state.json')}`,
      `bpf: { pinRoot: ${names.pinRoot} }`,
      `nftables: { table: ${names.table}, markMask: "0x00ff0000" }`,
    ].join('\n'),
  );
  await writeFile(
    join(dir, 'policy.yaml'),
    [
      'kind: Policy',
      'metadata: { name: client1-egress }',
      'spec:',
      '  selector: app == "c1"',
      '  types: [Egress]',
      '  egress:',
      '    - action: Allow',
      '      protocol: UDP',
      `      destination: { nets: ["${dnsmasq.ipv4}/32", "${dnsmasq.ipv6}/128"], ports: [53] }`,
      '    - action: Allow',
      '      protocol: TCP',
      '      destination: { domains: ["*.fresh.lab.test", "www.lab.test"], ports: [80] }',
      '    - action: Deny',
      '---',
      'kind: Endpoint',
      'metadata: { name: client1, labels: { app: c1 } }',
      `spec: { interface: ${clientInterface(lab)} }`,
    ].join('\n'),
  );
  return config;
}
