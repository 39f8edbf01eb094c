// Enforcement with real packets, inside network namespaces this test creates: a workload
// namespace and a server namespace routed through a "node" namespace, where the driver
// installs its table (nft tables are per namespace: the driver's nft runs under
// `ip netns exec`). Nothing is sent unless every namespace came up.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import type { CompiledPolicy, DesiredState, ProcessRunner } from '@dnsplane/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createNftablesDataplane, nftProcessRunner, type NftablesDataplane } from '@dnsplane/nftables';
import { anyPeer, githubSet, rule } from './fixtures.js';
import { uniqueSuffix, waitFor } from './kernel-helpers.js';

const exec = promisify(execFile);
const suffix = uniqueSuffix();
const ns = { node: `dpn${suffix}`, workload: `dpw${suffix}`, server: `dps${suffix}` };
const hostSide = { workload: `dpw${suffix}`, server: `dps${suffix}` }; // interface names in the node namespace
const serverAddress = '198.18.2.2';
const serverAddress6 = 'fd00:2::2';
const nodeAddress = '198.18.1.1';

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
/** Listens on every address given in argv (host,port pairs) and prints "ready". */
const SERVER = `
const net = require('node:net');
const pairs = process.argv.slice(1);
let ready = 0;
for (let i = 0; i < pairs.length; i += 2) {
  net.createServer((s) => { s.on('error', () => {}); s.end('ok'); })
    .listen(Number(pairs[i + 1]), pairs[i], () => { if (++ready === pairs.length / 2) console.log('ready'); });
}
`;

async function connect(port: number, host = serverAddress, from = ns.workload): Promise<string> {
  return (await inNs(from, 'node', '-e', CLIENT, host, String(port))).trim();
}

const listeners: ChildProcess[] = [];
async function listen(namespace: string, pairs: string[]): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', namespace, 'node', '-e', SERVER, ...pairs], { stdio: ['ignore', 'pipe', 'inherit'] });
  listeners.push(child);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  await waitFor(`listeners in ${namespace}`, async () => output.includes('ready'), 10_000);
}

const dataplanes: NftablesDataplane[] = [];
function newDataplane(): NftablesDataplane {
  const dataplane = createNftablesDataplane({
    tableName: `dnsplane_t${uniqueSuffix()}`,
    executor: 'nft-cli',
    processRunner: nodeNamespaceRunner,
  });
  dataplanes.push(dataplane);
  return dataplane;
}

let up = false;

beforeAll(async () => {
  for (const name of Object.values(ns)) await ip('netns', 'add', name);
  await ip('link', 'add', hostSide.workload, 'netns', ns.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.workload);
  await ip('link', 'add', hostSide.server, 'netns', ns.node, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.server);
  await inNs(ns.node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  await inNs(ns.node, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1');
  for (const [name, dev, address] of [
    [ns.node, hostSide.workload, `${nodeAddress}/24`],
    [ns.node, hostSide.workload, 'fd00:1::1/64'],
    [ns.node, hostSide.server, '198.18.2.1/24'],
    [ns.node, hostSide.server, 'fd00:2::1/64'],
    [ns.workload, 'eth0', '198.18.1.2/24'],
    [ns.workload, 'eth0', 'fd00:1::2/64'],
    [ns.server, 'eth0', `${serverAddress}/24`],
    [ns.server, 'eth0', `${serverAddress6}/64`],
  ] as const) {
    await inNs(name, 'ip', 'addr', 'add', address, 'dev', dev, ...(address.includes(':') ? ['nodad'] : []));
    await inNs(name, 'ip', 'link', 'set', dev, 'up');
    await inNs(name, 'ip', 'link', 'set', 'lo', 'up');
  }
  await inNs(ns.workload, 'ip', 'route', 'add', 'default', 'via', nodeAddress);
  await inNs(ns.workload, 'ip', '-6', 'route', 'add', 'default', 'via', 'fd00:1::1');
  await inNs(ns.server, 'ip', 'route', 'add', 'default', 'via', '198.18.2.1');
  await inNs(ns.server, 'ip', '-6', 'route', 'add', 'default', 'via', 'fd00:2::1');
  // link-local addresses go through DAD even when the global ones skip it; ND needs them
  for (const name of Object.values(ns)) {
    await waitFor(`IPv6 DAD in ${name}`, async () => (await inNs(name, 'ip', '-6', 'addr', 'show', 'tentative')).trim() === '', 10_000);
  }
  await listen(ns.server, [serverAddress, '8080', serverAddress, '8081', serverAddress6, '8080', serverAddress6, '8081']);
  await listen(ns.node, [nodeAddress, '9090', nodeAddress, '9091']);
  up = true;
});

afterEach(async () => {
  for (const dataplane of dataplanes.splice(0)) {
    await dataplane.remove().catch(() => undefined);
    await dataplane.close();
  }
});

afterAll(async () => {
  for (const child of listeners) if (child.pid !== undefined && child.exitCode === null) child.kill();
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

const serverEndpoint = (ingressPolicies: string[]) => ({
  name: 'srv',
  labels: {},
  interface: hostSide.server,
  host: false,
  addresses: [],
  ingressPolicies,
  egressPolicies: [],
});

describe('enforcement in network namespaces', () => {
  it('denies until the address is learned, then allows only the allowed port (IPv4 and IPv6)', async () => {
    expect(up).toBe(true);
    // sanity: without the table, the path is open (the first packets also resolve neighbours)
    await waitFor('the IPv4 path', async () => (await connect(8080)) === 'connected', 10_000);
    await waitFor('the IPv6 path', async () => (await connect(8080, serverAddress6)) === 'connected', 10_000);

    const dataplane = newDataplane();
    await dataplane.install(state);
    expect(await connect(8080)).toBe('timeout'); // default deny: the SYN is dropped
    expect(await connect(8080, serverAddress6)).toBe('timeout');
    const denied = (await dataplane.status()).counters;
    expect(denied['policy.default_deny.ep_web_egress']).toBeGreaterThan(0);
    expect(denied['policy.default_deny']).toBe(denied['policy.default_deny.ep_web_egress']);
    expect(denied['policy.allowed']).toBe(0);

    const expiresAt = Date.now() + 60_000;
    await dataplane.addLearned([
      { setId: githubSet.id, family: 4, address: serverAddress, expiresAt },
      { setId: githubSet.id, family: 6, address: serverAddress6, expiresAt },
    ]);
    expect(await connect(8080)).toBe('connected');
    // forget the neighbours learned before the table existed: ND must pass the endpoint chains
    for (const name of [ns.workload, ns.node]) await inNs(name, 'ip', '-6', 'neigh', 'flush', 'all');
    expect(await connect(8080, serverAddress6)).toBe('connected');
    expect(await connect(8081)).toBe('timeout'); // learned address, port not allowed
    // the Allow rules counted what they accepted (the SYNs; the rest was established)
    const allowed = await dataplane.status();
    expect(allowed.counters['policy.allowed']).toBeGreaterThanOrEqual(2);
    // a metrics scrape's status: the terse listing keeps the rules' counters, the element
    // counts come from what the driver wrote — the same figures
    expect(await dataplane.status({ detail: 'counters' })).toEqual(allowed);

    // a policy edit keeps the learned member
    await dataplane.install({ ...state, policies: [{ ...egress, egress: [...egress.egress!, rule(1, { action: 'log' })] }] });
    expect(await connect(8080)).toBe('connected');
    await dataplane.remove();
    expect(await connect(8081)).toBe('connected');
  });

  it("an egress Allow does not skip the receiving endpoint's ingress policy", async () => {
    expect(up).toBe(true);
    const allowBoth: CompiledPolicy = {
      name: 'web-egress',
      order: 1,
      egress: [rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 8080, last: 8081 }] } })],
    };
    const srvIngress: CompiledPolicy = {
      name: 'srv-ingress',
      order: 2,
      ingress: [
        rule(0, {
          action: 'allow',
          protocol: 6,
          source: { ...anyPeer, nets: [{ family: 4, text: '198.18.1.0/24' }] },
          destination: { ...anyPeer, ports: [{ first: 8081, last: 8081 }] },
        }),
      ],
    };
    const dataplane = newDataplane();
    await dataplane.install({
      ...state,
      policies: [allowBoth, srvIngress],
      endpoints: [...state.endpoints, serverEndpoint(['srv-ingress'])],
    });
    expect(await connect(8080)).toBe('timeout'); // allowed out, denied in
    expect(await connect(8081)).toBe('connected'); // allowed out and in
  });

  it('enforces a host endpoint on input, never on loopback', async () => {
    expect(up).toBe(true);
    const hostIngress: CompiledPolicy = {
      name: 'node-ingress',
      order: 1,
      ingress: [rule(0, { action: 'allow', protocol: 6, destination: { ...anyPeer, ports: [{ first: 9090, last: 9090 }] } })],
    };
    const dataplane = newDataplane();
    await dataplane.install({
      ...state,
      domainSets: [],
      policies: [hostIngress],
      endpoints: [{ name: 'node', labels: {}, host: true, addresses: [], ingressPolicies: ['node-ingress'], egressPolicies: [] }],
    });
    expect(await connect(9090, nodeAddress)).toBe('connected');
    expect(await connect(9091, nodeAddress)).toBe('timeout');
    // the node reaching its own address goes over lo: untouched
    expect(await connect(9091, nodeAddress, ns.node)).toBe('connected');
  });
});
