// Real traffic through the driver's rules: a router namespace runs iptables (both backends)
// between a client and a server namespace, each behind a veth pair. 198.18.0.0/15 only.
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
import { deleteNetns, inNetns, netnsRunner, sh } from './netns.js';
import { connect, createLab, SERVER, startServer } from './lab.js';


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
      // The drops show in status (SYN and its retransmissions, for 8081 and 8082).
      expect((await dataplane.status()).counters['ipv4_dropped_packets']).toBeGreaterThanOrEqual(2);

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
