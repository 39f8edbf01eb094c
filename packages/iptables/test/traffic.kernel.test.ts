// Real traffic through the driver's rules: a router namespace runs iptables (both backends)
// between a client and a server namespace, each behind a veth pair. 198.18.0.0/15 only.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { DesiredState, DomainSet } from '@dnsplane/core';
import { createIptablesDataplane, domainMatchPinPath } from '../src/index.js';
import type { DomainMatchProvider, ResolvedBackend } from '../src/index.js';
import { dns, peer, port, rule, v4, v6 } from './fixtures.js';
import { createNetns, deleteNetns, inNetns, netnsRunner, sh } from './netns.js';

const SERVER = '198.18.2.2';

/** Client egress allows 8080 and 8081 to the server; the server's ingress allows only 8080. */
const state: DesiredState = {
  domainSets: [],
  policies: [
    {
      name: 'client-egress',
      order: 1,
      egress: [rule(0, 'allow', { protocol: 6, destination: peer({ nets: [v4(`${SERVER}/32`)], ports: [port(8080, 8081)] }), family: 4 })],
    },
    {
      name: 'server-ingress',
      order: 2,
      ingress: [rule(0, 'allow', { protocol: 6, source: peer({ nets: [v4('198.18.1.0/24')] }), destination: peer({ ports: [port(8080)] }), family: 4 })],
    },
  ],
  endpoints: [
    { name: 'client', labels: {}, interface: 'dp-c', host: false, addresses: [v4('198.18.1.2/32')], ingressPolicies: [], egressPolicies: ['client-egress'] },
    { name: 'server', labels: {}, interface: 'dp-s', host: false, addresses: [v4(`${SERVER}/32`)], ingressPolicies: ['server-ingress'], egressPolicies: [] },
  ],
  dns,
};

interface Lab {
  readonly router: string;
  readonly client: string;
  readonly server: string;
}

async function link(lab: Lab, peerNs: string, routerIf: string, subnet: 1 | 2): Promise<void> {
  await sh('ip', ['link', 'add', routerIf, 'netns', lab.router, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peerNs]);
  await inNetns(lab.router, 'ip', ['addr', 'add', `198.18.${subnet}.1/24`, 'dev', routerIf]);
  await inNetns(lab.router, 'ip', ['addr', 'add', `fd00:${subnet}::1/64`, 'dev', routerIf, 'nodad']);
  await inNetns(lab.router, 'ip', ['link', 'set', routerIf, 'up']);
  await inNetns(peerNs, 'ip', ['addr', 'add', `198.18.${subnet}.2/24`, 'dev', 'eth0']);
  await inNetns(peerNs, 'ip', ['addr', 'add', `fd00:${subnet}::2/64`, 'dev', 'eth0', 'nodad']);
  await inNetns(peerNs, 'ip', ['link', 'set', 'eth0', 'up']);
  await inNetns(peerNs, 'ip', ['route', 'add', 'default', 'via', `198.18.${subnet}.1`]);
  await inNetns(peerNs, 'ip', ['-6', 'route', 'add', 'default', 'via', `fd00:${subnet}::1`]);
}

/** Router between a client (198.18.1.2, fd00:1::2) and a server (198.18.2.2, fd00:2::2). */
async function createLab(names: string[]): Promise<Lab> {
  const lab: Lab = { router: await createNetns('dnsplane-iptr'), client: await createNetns('dnsplane-iptc'), server: await createNetns('dnsplane-ipts') };
  names.push(lab.router, lab.client, lab.server);
  await link(lab, lab.client, 'dp-c', 1);
  await link(lab, lab.server, 'dp-s', 2);
  await inNetns(lab.router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  return lab;
}

/** A TCP server on the given ports in `netns`; resolves once every port listens. */
function startServer(netns: string, ports: readonly number[], hosts: readonly string[] = [SERVER]): Promise<ChildProcess> {
  const script = `const net=require('net');let n=0;for(const h of ${JSON.stringify(hosts)})for(const p of ${JSON.stringify(ports)}){net.createServer(s=>{s.on('error',()=>{});s.end('ok')}).listen(p,h,()=>{if(++n===${ports.length * hosts.length})console.log('listening')})}`;
  const child = spawn('nsenter', [`--net=/run/netns/${netns}`, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error('server did not listen within 10 s')), 10_000);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      if (chunk.includes('listening')) {
        clearTimeout(deadline);
        resolve(child);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(deadline);
      reject(new Error(`server exited (${code})`));
    });
  });
}

type Outcome = 'connected' | 'refused' | 'timeout';

/** One TCP connect from `netns`: connected, refused (RST) or timeout (dropped), within 1.5 s. */
async function connect(netns: string, target: number, host: string = SERVER): Promise<Outcome> {
  const script = `const s=require('net').connect(${target},'${host}');const t=setTimeout(()=>{console.log('timeout');process.exit(0)},1500);s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',e=>{console.log(e.code==='ECONNREFUSED'?'refused':'error:'+e.code);process.exit(0)})`;
  const out = (await inNetns(netns, process.execPath, ['-e', script])).trim();
  if (out !== 'connected' && out !== 'refused' && out !== 'timeout') throw new Error(`unexpected connect outcome ${out}`);
  return out;
}

describe.each(['legacy', 'nft'] as const)('traffic through the %s backend', (backend: ResolvedBackend) => {
  it('allows what both endpoints allow and drops the rest; remove restores plain forwarding', async () => {
    const names: string[] = [];
    let server: ChildProcess | undefined;
    try {
      const lab = await createLab(names);
      server = await startServer(lab.server, [8080, 8081]);
      // The lab works before any policy: both ports connect, a closed port refuses.
      expect(await connect(lab.client, 8080)).toBe('connected');
      expect(await connect(lab.client, 8081)).toBe('connected');
      expect(await connect(lab.client, 8082)).toBe('refused');

      const dataplane = createIptablesDataplane({ backend, runner: netnsRunner(lab.router) });
      await dataplane.install(state);
      expect(await connect(lab.client, 8080)).toBe('connected');
      // Allowed by the client's egress, denied by the server's ingress: both are checked.
      expect(await connect(lab.client, 8081)).toBe('timeout');
      // Denied by the client's egress (default deny): dropped, not refused by the server.
      expect(await connect(lab.client, 8082)).toBe('timeout');

      await dataplane.remove();
      expect(await connect(lab.client, 8081)).toBe('connected');
      expect(await connect(lab.client, 8082)).toBe('refused');
    } finally {
      if (server?.exitCode === null) server.kill();
      for (const name of names) await deleteNetns(name);
    }
  });
});

const MEMBER_SET = 0x00c0ffee;
const STRANGER_SET = 0x00bad5e7;

/** Client egress: port 8080 to members of one set, 8081 to members of another. */
const domainState: DesiredState = {
  domainSets: [
    { id: MEMBER_SET, name: 'ds_00c0ffee', patterns: [] },
    { id: STRANGER_SET, name: 'ds_00bad5e7', patterns: [] },
  ],
  policies: [
    {
      name: 'client-domains',
      order: 1,
      egress: [
        rule(0, 'allow', { protocol: 6, destination: peer({ domainSetId: MEMBER_SET, ports: [port(8080)] }) }),
        rule(1, 'allow', { protocol: 6, destination: peer({ domainSetId: STRANGER_SET, ports: [port(8081)] }) }),
      ],
    },
  ],
  endpoints: [{ name: 'client', labels: {}, interface: 'dp-c', host: false, addresses: [], ingressPolicies: [], egressPolicies: ['client-domains'] }],
  dns,
};

/**
 * Pins stand-in match programs in `prepare`, as the bpf-parser provider will pin the real
 * ones: every address is a member of MEMBER_SET, none of STRANGER_SET.
 */
function standInMatches(pinRoot: string, workDir: string): DomainMatchProvider & { prepared: number[] } {
  const source = fileURLToPath(new URL('./bpf/stand-in-match.c', import.meta.url));
  const prepared: number[] = [];
  return {
    prepared,
    matchProgramPath: (setId) => domainMatchPinPath(pinRoot, setId),
    async prepare(sets: readonly DomainSet[]) {
      await sh('mkdir', ['-p', pinRoot]);
      for (const set of sets) {
        const verdict = set.id === MEMBER_SET ? 1 : 0;
        const object = join(workDir, `match-${verdict}.o`);
        await sh('clang', ['-O2', '-target', 'bpf', `-DVERDICT=${verdict}`, '-c', source, '-o', object]);
        await sh('bpftool', ['prog', 'load', object, domainMatchPinPath(pinRoot, set.id), 'type', 'socket']);
        prepared.push(set.id);
      }
    },
  };
}

describe.each(['legacy', 'nft'] as const)('domain rules through xt_bpf on the %s backend', (backend: ResolvedBackend) => {
  it('admits what the pinned match program of the set accepts', async () => {
    const names: string[] = [];
    let server: ChildProcess | undefined;
    const pinRoot = `/sys/fs/bpf/dnsplane-test-${randomBytes(4).toString('hex')}`;
    const workDir = await mkdtemp(join(tmpdir(), 'dnsplane-ipt-'));
    try {
      const lab = await createLab(names);
      server = await startServer(lab.server, [8080, 8081]);
      expect(await connect(lab.client, 8081)).toBe('connected');

      const matches = standInMatches(pinRoot, workDir);
      const dataplane = createIptablesDataplane({ backend, runner: netnsRunner(lab.router), domainMatches: matches });
      await dataplane.install(domainState);
      expect(matches.prepared.sort()).toEqual([STRANGER_SET, MEMBER_SET].sort());
      expect(await connect(lab.client, 8080)).toBe('connected');
      expect(await connect(lab.client, 8081)).toBe('timeout');
      await dataplane.remove();
    } finally {
      if (server?.exitCode === null) server.kill();
      for (const name of names) await deleteNetns(name);
      await rm(pinRoot, { recursive: true, force: true });
      await rm(workDir, { recursive: true, force: true });
    }
  });
});

const SERVER6 = 'fd00:2::2';
const ROUTER = '198.18.1.1';

/** IPv6 forwarding policy for the client, and the router itself as a host endpoint. */
const v6AndHostState: DesiredState = {
  domainSets: [],
  policies: [
    {
      name: 'client-v6',
      order: 1,
      egress: [
        rule(0, 'allow', { protocol: 6, destination: peer({ nets: [v6(`${SERVER6}/128`)], ports: [port(8080)] }), family: 6 }),
        rule(1, 'allow', { protocol: 6, destination: peer({ nets: [v4(`${ROUTER}/32`)], ports: [port(9090, 9091)] }), family: 4 }),
      ],
    },
    {
      name: 'node-ingress',
      order: 2,
      ingress: [
        rule(0, 'allow', { protocol: 6, source: peer({ nets: [v4('198.18.1.0/24')] }), destination: peer({ ports: [port(9090), port(9092)] }), family: 4 }),
      ],
    },
  ],
  endpoints: [
    { name: 'client', labels: {}, interface: 'dp-c', host: false, addresses: [], ingressPolicies: [], egressPolicies: ['client-v6'] },
    { name: 'node', labels: {}, host: true, addresses: [], ingressPolicies: ['node-ingress'], egressPolicies: [] },
  ],
  dns,
};

describe.each(['legacy', 'nft'] as const)('IPv6 and host endpoints on the %s backend', (backend: ResolvedBackend) => {
  it("enforces ip6tables rules on forwarded IPv6, and a workload's egress and the host's ingress on INPUT", async () => {
    const names: string[] = [];
    const servers: ChildProcess[] = [];
    try {
      const lab = await createLab(names);
      servers.push(await startServer(lab.server, [8080, 8081], [SERVER6]));
      servers.push(await startServer(lab.router, [9090, 9091, 9092], [ROUTER]));
      expect(await connect(lab.client, 8081, SERVER6)).toBe('connected');
      expect(await connect(lab.client, 9091, ROUTER)).toBe('connected');

      const dataplane = createIptablesDataplane({ backend, runner: netnsRunner(lab.router) });
      await dataplane.install(v6AndHostState);
      // Forget the neighbours: IPv6 neighbour discovery with the router must still work
      // although the router's host endpoint denies everything else over IPv6.
      await inNetns(lab.client, 'ip', ['-6', 'neigh', 'flush', 'dev', 'eth0']);
      await inNetns(lab.router, 'ip', ['-6', 'neigh', 'flush', 'dev', 'dp-c']);
      expect(await connect(lab.client, 8080, SERVER6)).toBe('connected');
      expect(await connect(lab.client, 8081, SERVER6)).toBe('timeout');
      expect(await connect(lab.client, 9090, ROUTER)).toBe('connected');
      // Allowed by the client's egress, denied by the host's ingress.
      expect(await connect(lab.client, 9091, ROUTER)).toBe('timeout');
      // Allowed by the host's ingress, denied by the client's egress (to the host, on INPUT).
      expect(await connect(lab.client, 9092, ROUTER)).toBe('timeout');
      await dataplane.remove();
      expect(await connect(lab.client, 9091, ROUTER)).toBe('connected');
    } finally {
      for (const server of servers) if (server.exitCode === null) server.kill();
      for (const name of names) await deleteNetns(name);
    }
  });
});
