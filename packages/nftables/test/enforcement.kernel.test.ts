// Enforcement with real packets, inside network namespaces this test creates: a workload
// namespace and a server namespace routed through a "node" namespace, where the driver
// installs its table (nft tables are per namespace: the driver's nft runs under
// `ip netns exec`). Nothing is sent unless every namespace came up.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import type { CompiledPolicy, DesiredState, ProcessRunner } from '@dnsplane/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNftablesDataplane, nftProcessRunner, type NftablesDataplane } from '@dnsplane/nftables';
import { anyPeer, githubSet, rule } from './fixtures.js';
import { uniqueSuffix, waitFor } from './kernel-helpers.js';

const exec = promisify(execFile);
const suffix = uniqueSuffix();
const ns = { node: `dpn${suffix}`, workload: `dpw${suffix}`, server: `dps${suffix}` };
const hostSide = { workload: `dpw${suffix}`, server: `dps${suffix}` }; // interface names in the node namespace
const serverAddress = '198.18.2.2';

async function ip(...args: string[]): Promise<void> {
  await exec('ip', args);
}
async function inNs(name: string, ...command: string[]): Promise<string> {
  return (await exec('ip', ['netns', 'exec', name, ...command])).stdout;
}

/** Runs the driver's nft inside the node namespace. */
const nodeNamespaceRunner: ProcessRunner = {
  run: (command, args, options) => nftProcessRunner.run('ip', ['netns', 'exec', ns.node, command, ...args], options),
};

const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const socket = net.connect({ host, port: Number(port), timeout: 1500 });
socket.on('connect', () => { console.log('connected'); socket.destroy(); });
socket.on('timeout', () => { console.log('timeout'); socket.destroy(); });
socket.on('error', (e) => console.log('error ' + e.code));
`;
const SERVER = `
const net = require('node:net');
let ready = 0;
for (const port of [8080, 8081]) {
  net.createServer((s) => { s.on('error', () => {}); s.end('ok'); }).listen(port, '${serverAddress}', () => { if (++ready === 2) console.log('ready'); });
}
`;

async function connect(port: number): Promise<string> {
  return (await inNs(ns.workload, 'node', '-e', CLIENT, serverAddress, String(port))).trim();
}

let server: ChildProcess | undefined;
let dataplane: NftablesDataplane | undefined;
let up = false;

beforeAll(async () => {
  for (const name of Object.values(ns)) await ip('netns', 'add', name);
  await ip('link', 'add', hostSide.workload, 'netns', ns.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.workload);
  await ip('link', 'add', hostSide.server, 'netns', ns.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.server);
  await inNs(ns.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  for (const [name, dev, address] of [
    [ns.node, hostSide.workload, '198.18.1.1/24'],
    [ns.node, hostSide.server, '198.18.2.1/24'],
    [ns.workload, 'eth0', '198.18.1.2/24'],
    [ns.server, 'eth0', `${serverAddress}/24`],
  ] as const) {
    await inNs(name, 'ip', 'addr', 'add', address, 'dev', dev);
    await inNs(name, 'ip', 'link', 'set', dev, 'up');
    await inNs(name, 'ip', 'link', 'set', 'lo', 'up');
  }
  await inNs(ns.workload, 'ip', 'route', 'add', 'default', 'via', '198.18.1.1');
  await inNs(ns.server, 'ip', 'route', 'add', 'default', 'via', '198.18.2.1');
  server = spawn('ip', ['netns', 'exec', ns.server, 'node', '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  server.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  await waitFor('the server to listen', async () => output.includes('ready'), 10_000);
  up = true;
});

afterAll(async () => {
  await dataplane?.close();
  if (server?.pid !== undefined) server.kill();
  for (const name of Object.values(ns)) await ip('netns', 'del', name).catch(() => undefined);
});

const egress: CompiledPolicy = {
  name: 'web-egress',
  order: 1,
  egress: [
    rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 8080, last: 8080 }], domainSetId: githubSet.id } }),
  ],
};

const state: DesiredState = {
  domainSets: [githubSet],
  policies: [egress],
  endpoints: [
    {
      name: 'web',
      labels: {},
      interface: hostSide.workload,
      host: false,
      addresses: [{ family: 4, text: '198.18.1.2/32' }],
      ingressPolicies: [],
      egressPolicies: ['web-egress'],
    },
  ],
  dns: { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 },
};

describe('enforcement in a network namespace', () => {
  it('denies until the address is learned, then allows only the allowed port', async () => {
    expect(up).toBe(true);
    // sanity: without the table, the path is open
    expect(await connect(8080)).toBe('connected');

    dataplane = createNftablesDataplane({ tableName: `dnsplane_t${suffix}`, executor: 'nft-cli', processRunner: nodeNamespaceRunner });
    await dataplane.install(state);
    expect(await connect(8080)).toBe('timeout'); // default deny: the SYN is dropped

    await dataplane.addLearned([{ setId: githubSet.id, family: 4, address: serverAddress, expiresAt: Date.now() + 60_000 }]);
    expect(await connect(8080)).toBe('connected');
    expect(await connect(8081)).toBe('timeout'); // learned address, port not allowed

    // re-install with the same policy changes nothing: still allowed (learned member kept)
    await dataplane.install({ ...state, policies: [{ ...egress, egress: [...egress.egress!, rule(1, { action: 'log' })] }] });
    expect(await connect(8080)).toBe('connected');
    await dataplane.remove();
    expect(await connect(8081)).toBe('connected');
  });
});
