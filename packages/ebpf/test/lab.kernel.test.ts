// The ebpf dataplane end to end: the real agent (`dnsplane run`, dataplane: ebpf) in the lab's
// node namespace, the parser on tc learning from dnsmasq, the policy program enforcing on the
// workload's host-side interface. Real resolver traffic, real TCP, real kernel.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfMap, MAP_NAMES, readCounters } from '@dnsplane/bpf-parser';
import { POLICY_MAP_NAMES, encodeIndex } from '@dnsplane/ebpf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LabProcess } from '../../../test/lab/lab.js';
import { useLab } from '../../../test/lab/vitest-lab.js';
import { expectEveryFirstSynPasses } from '../../../test/lab/first-syn.js';
import { waitFor } from '../../../test/lab/wait.js';
import { pendingLearnedEventRecords } from '../../../test/lab/learned-events.js';

const AGENT = fileURLToPath(new URL('../../agent/bin/dnsplane.js', import.meta.url));
const HELD = fileURLToPath(new URL('./scripts/held-connection.mjs', import.meta.url));
const PIN_ROOT = `/sys/fs/bpf/dnsplane-t${randomBytes(4).toString('hex')}`;
const HELD_PORT = 9000;
const HOST_ALLOWED = 8081;
const HOST_DENIED = 8082;


function policyDocuments(lab: ReturnType<ReturnType<typeof useLab>>, withHeldPort: boolean, client1Ingress = true): string {
  const dnsmasq = lab.dnsServers.dnsmasq;
  return [
    'kind: Policy',
    'metadata: { name: client1-egress }',
    'spec:',
    '  order: 10',
    '  selector: app == "c1"',
    '  types: [Egress]',
    '  egress:',
    '    - action: Allow',
    '      protocol: UDP',
    `      destination: { nets: ["${dnsmasq.ipv4}/32", "${dnsmasq.ipv6}/128"], ports: [53] }`,
    '    - action: Allow',
    '      protocol: TCP',
    '      destination: { domains: ["*.fresh.lab.test", "www.lab.test"], ports: [80] }',
    ...(withHeldPort ? ['    - action: Allow', '      protocol: TCP', `      destination: { nets: ["198.19.1.1/32"], ports: [${HELD_PORT}] }`] : []),
    '    - action: Log',
    '      protocol: TCP',
    '      destination: { ports: [8080] }',
    '    - action: Deny',
    '---',
    // Ingress applies and allows nothing: replies get in only through the connection table.
    'kind: Policy',
    'metadata: { name: client1-ingress }',
    'spec:',
    '  order: 20',
    `  selector: ${client1Ingress ? 'app == "c1"' : 'app == "nobody"'}`,
    '  types: [Ingress]',
    '  ingress: []',
    '---',
    // The node itself: host ingress allows TCP 8081 only. Forwarded traffic is not host traffic.
    'kind: Policy',
    'metadata: { name: node-ingress }',
    'spec:',
    '  order: 30',
    '  selector: role == "node"',
    '  types: [Ingress]',
    '  ingress:',
    '    - action: Allow',
    '      protocol: TCP',
    `      destination: { ports: [${HOST_ALLOWED}] }`,
    '---',
    'kind: Endpoint',
    'metadata: { name: node, labels: { role: node } }',
    'spec: { host: true }',
    '---',
    'kind: Endpoint',
    'metadata: { name: client1, labels: { app: c1 } }',
    `spec: { interface: ${lab.endpoints['client1']?.hostInterface ?? ''} }`,
  ].join('\n');
}

describe('ebpf dataplane in the lab (real agent)', () => {
  const lab = useLab({ clients: 2, freshNames: 400 });
  let dir = '';
  let config = '';
  let agent: LabProcess | undefined;
  // The generation in force (pino's output may reach the log file late; the kernel map does not).
  const generation = (): number | undefined => {
    const map = BpfMap.fromPinned(join(PIN_ROOT, POLICY_MAP_NAMES.active));
    try {
      return map.lookup(encodeIndex(0))?.readUInt32LE(0);
    } finally {
      map.close();
    }
  };

  beforeAll(async () => {
    const l = lab();
    dir = await mkdtemp(join(tmpdir(), 'dnsplane-ebpf-lab-'));
    config = join(dir, 'dnsplane.yaml');
    await writeFile(
      config,
      [
        'dataplane: ebpf',
        `dns: { trustedServers: ${JSON.stringify(l.trustedServers)}, minTTL: 30, extraTTL: 10 }`,
        'resources: ["./policy.yaml"]',
        `statePath: ${join(dir, 'state.json')}`,
        `bpf: { pinRoot: ${PIN_ROOT} }`,
        'driftCheckSeconds: 1',
      ].join('\n'),
    );
    await writeFile(join(dir, 'policy.yaml'), policyDocuments(l, true));
    agent = l.startAgentProcess(['node', AGENT, 'run', '-c', config, '--socket', join(dir, 'agent.sock')], { name: 'ebpf-agent' });
    await agent.waitForOutput(/"event":"applied"/, 60_000);
  }, 90_000);

  afterAll(async () => {
    try {
      await agent?.stop();
      const removal = lab().startAgentProcess(['node', AGENT, 'uninstall', '-c', config, '--socket', join(dir, 'agent.sock')], { name: 'ebpf-uninstall' });
      await removal.wait();
      expect(existsSync(PIN_ROOT)).toBe(false);
      for (const direction of ['ingress', 'egress']) {
        const shown = await lab().exec('node', ['tc', 'filter', 'show', 'dev', lab().endpoints['client1']?.hostInterface ?? '', direction]);
        expect(shown.stdout).not.toMatch(/dnsplane/);
      }
    } finally {
      await rm(PIN_ROOT, { recursive: true, force: true });
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('attaches the parser and the policy programs on tc of the workload interface', async () => {
    const shown = await lab().exec('node', ['tc', 'filter', 'show', 'dev', lab().endpoints['client1']?.hostInterface ?? '', 'ingress']);
    // tc prints program names cut to 15 characters.
    expect(shown.stdout).toMatch(/pref 212 bpf chain 0 handle 0xd15 dnsplane_parse_/);
    expect(shown.stdout).toMatch(/pref 213 bpf chain 0 handle 0xd15 dnsplane_policy/);
    const egress = await lab().exec('node', ['tc', 'filter', 'show', 'dev', lab().endpoints['client1']?.hostInterface ?? '', 'egress']);
    expect(egress.stdout).toMatch(/pref 213 bpf chain 0 handle 0xd15 dnsplane_policy/);
  });

  it('puts back a tc filter someone deleted (the drift check, every driftCheckSeconds)', async () => {
    const l = lab();
    const device = l.endpoints['client1']?.hostInterface ?? '';
    const policyFilter = async (): Promise<boolean> =>
      /pref 213 bpf chain 0 handle 0xd15 dnsplane_policy/.test((await l.exec('node', ['tc', 'filter', 'show', 'dev', device, 'ingress'])).stdout);
    expect(await policyFilter()).toBe(true);
    const deleted = await l.exec('node', ['tc', 'filter', 'del', 'dev', device, 'ingress', 'pref', '213', 'handle', '0xd15', 'bpf']);
    expect(deleted.code, deleted.stderr).toBe(0); // (the next check may put it back at any moment)
    await waitFor('the policy filter back on the workload interface', async () => ((await policyFilter()) ? true : undefined), { timeoutMs: 15_000 });
    await agent?.waitForOutput(/"event":"repaired"/, 10_000);
  });

  it('200 fresh allowed names: every first SYN passes (zero SYN retransmits), replies through the connection table', async () => {
    const trials = lab().allocateFresh(200).map((f) => ({ name: f.name, port: 80 }));
    await expectEveryFirstSynPasses(lab(), 'client1', trials);
    // The policy program reads the membership maps and nobody reads learned events here: the
    // parser wrote none (a ring buffer nobody drains would fill and count every later one lost).
    expect(pendingLearnedEventRecords(PIN_ROOT)).toBe(0);
    const counters = BpfMap.fromPinned(join(PIN_ROOT, MAP_NAMES.counters));
    try {
      expect(readCounters(counters)).toMatchObject({ events_lost: 0 });
      expect(readCounters(counters).learned).toBeGreaterThanOrEqual(200);
    } finally {
      counters.close();
    }
  }, 60_000);

  it('denies a name the policy does not allow, and an unsolicited connection to the workload', async () => {
    const denied = await lab().connectAfterResolve('client1', 'blocked.lab.test', 80, { connectTimeoutMs: 1500 });
    expect(denied.addresses.length).toBeGreaterThan(0);
    expect(denied.connected).toBe(false);
    const allowed = await lab().curl('client1', 'http://www.lab.test/', { timeoutMs: 5000 });
    expect(allowed.httpStatus).toBe(200);
    // client2 is not an endpoint: it reaches the web server, but not client1 (ingress: nothing allowed).
    const inbound = await lab().exec('client2', ['curl', '-s', '-m', '1.5', `http://${lab().endpoints['client1']?.ipv4 ?? ''}:80/`]);
    expect(inbound.code).not.toBe(0);
  }, 30_000);

  it('dnsplane status shows the tc filters, policy counters and learned entries of the ebpf dataplane', async () => {
    const result = await lab().exec('node', ['node', AGENT, 'status', '--socket', join(dir, 'agent.sock'), '--json']);
    expect(result.code).toBe(0);
    const text = result.stdout;
    const hostInterface = lab().endpoints['client1']?.hostInterface ?? '';
    expect(text).toContain(`tc ingress ${hostInterface} dnsplane_policy_ingress`);
    expect(text).toContain(`tc egress ${hostInterface} dnsplane_policy_egress`);
    expect(text).toContain(`tc ingress ${hostInterface} dnsplane_parse_tc`);
    const counters = [...text.matchAll(/"policy\.(\w+)":\s*(\d+)/g)].map((m) => [m[1], Number(m[2])] as const);
    const byName = Object.fromEntries(counters);
    expect(byName['established']).toBeGreaterThan(0);
    expect(byName['allowed']).toBeGreaterThanOrEqual(200);
    expect(byName['default_deny']).toBeGreaterThan(0);
    expect(Number(/"learned":\s*(\d+)/.exec(text)?.[1] ?? 0)).toBeGreaterThanOrEqual(200);
  }, 20_000);

  it('a Log rule reaches the agent\'s structured log through the ring buffer (and evaluation goes on to the Deny)', async () => {
    const result = await lab().connectAfterResolve('client1', 'www.lab.test', 8080, { connectTimeoutMs: 1500 });
    expect(result.connected).toBe(false);
    const line = await agent?.waitForOutput(/"event":"policy_log".*"destinationPort":8080/, 15_000);
    expect(JSON.parse(line ?? '{}')).toMatchObject({ policy: 'client1-egress', endpoint: 'client1', direction: 'egress', rule: 3, protocol: 6, destination: '198.19.1.1' });
  }, 30_000);

  it('a host endpoint: the node accepts only what its ingress allows, forwarded traffic is untouched', async () => {
    const l = lab();
    const flags = await mkdtemp(join(tmpdir(), 'dnsplane-ebpf-host-'));
    const gateway = l.endpoints['client2']?.gateway.ipv4 ?? '';
    const connect = (port: number) =>
      l.exec('client2', ['node', '-e', `const s=require('net').connect(${port},'${gateway}');s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',(e)=>{console.log(e.code);process.exit(1)});setTimeout(()=>{console.log('timeout');process.exit(1)},1500)`]);
    try {
      for (const port of [HOST_ALLOWED, HOST_DENIED]) await mkdir(join(flags, String(port)));
      const servers = [HOST_ALLOWED, HOST_DENIED].map((port) => l.exec('node', ['node', HELD, 'server', String(port), join(flags, String(port))], { timeoutMs: 60_000 }));
      await waitFor('the node listeners', () => ([HOST_ALLOWED, HOST_DENIED].every((p) => existsSync(join(flags, String(p), 'listening'))) ? true : undefined), { timeoutMs: 15_000 });
      expect((await connect(HOST_ALLOWED)).stdout).toContain('connected');
      expect((await connect(HOST_DENIED)).stdout).toContain('timeout'); // dropped, not refused
      // client2 → web is forwarded through the node: not the host's ingress.
      expect((await l.curl('client2', 'http://www.lab.test/', { timeoutMs: 5000 })).httpStatus).toBe(200);
      for (const port of [HOST_ALLOWED, HOST_DENIED]) await writeFile(join(flags, String(port), 'done'), '');
      await Promise.all(servers);
    } finally {
      for (const port of [HOST_ALLOWED, HOST_DENIED]) await writeFile(join(flags, String(port), 'done'), '').catch(() => undefined);
      await rm(flags, { recursive: true, force: true });
    }
  }, 40_000);

  it('an established flow survives a policy change that removes its allow; a new one is denied', async () => {
    const l = lab();
    const flags = await mkdtemp(join(tmpdir(), 'dnsplane-ebpf-held-'));
    try {
      const server = l.exec('web', ['node', HELD, 'server', String(HELD_PORT), flags], { timeoutMs: 60_000 });
      await waitFor('the echo server', () => (existsSync(join(flags, 'listening')) ? true : undefined), { timeoutMs: 15_000 });
      const client = l.exec('client1', ['node', HELD, 'client', '198.19.1.1', String(HELD_PORT), flags], { timeoutMs: 60_000 });
      await waitFor('the held connection', () => (existsSync(join(flags, 'connected')) ? true : undefined), { timeoutMs: 15_000 });
      const before = generation();
      await writeFile(join(dir, 'policy.yaml'), policyDocuments(l, false));
      await waitFor('the agent to apply the change', () => (generation() !== before ? true : undefined), { timeoutMs: 30_000 }).catch((error: unknown) => {
        throw new Error(`${String(error)}\n${agent?.stdout().slice(-3000) ?? ''}\n${agent?.stderr().slice(-2000) ?? ''}`);
      });
      await writeFile(join(flags, 'changed'), '');
      const held = await client;
      expect(held.stdout).toContain('first ok one');
      expect(held.stdout).toContain('second ok two');
      const fresh = await l.exec('client1', ['node', '-e', `const s=require('net').connect(${HELD_PORT},'198.19.1.1');s.on('connect',()=>{console.log('connected');process.exit(0)});setTimeout(()=>{console.log('timeout');process.exit(1)},1500)`]);
      expect(fresh.stdout).toContain('timeout');
      await writeFile(join(flags, 'done'), '');
      await server;
    } finally {
      await writeFile(join(flags, 'done'), '').catch(() => undefined);
      await rm(flags, { recursive: true, force: true });
    }
  }, 60_000);

  it('UDP DNS opens connection entries only where an ingress policy needs them: none for an egress-only endpoint, whose answers pass all the same', async () => {
    const l = lab();
    const hostInterface = l.endpoints['client1']?.hostInterface ?? '';
    const ifindex = Number((await l.exec('node', ['cat', `/sys/class/net/${hostInterface}/ifindex`])).stdout.trim());
    expect(ifindex).toBeGreaterThan(0);
    const ct = BpfMap.fromPinned(join(PIN_ROOT, POLICY_MAP_NAMES.ct));
    // dnsplane_ct_key: ifindex, family, protocol, local port, remote port (host order), …
    const dnsEntries = (): Buffer[] => ct.keys().filter((k) => k.readUInt32LE(0) === ifindex && k[5] === 17 && k.readUInt16LE(8) === 53);
    const apply = async (client1Ingress: boolean): Promise<void> => {
      const before = generation();
      await writeFile(join(dir, 'policy.yaml'), policyDocuments(l, false, client1Ingress));
      await waitFor('the agent to apply the change', () => (generation() !== before ? true : undefined), { timeoutMs: 30_000 });
    };
    try {
      const [tracked, untracked] = l.allocateFresh(2);
      if (tracked === undefined || untracked === undefined) throw new Error('no fresh names left');
      // As installed: client1's ingress is selected (allows nothing): its answers need the entries.
      for (const key of dnsEntries()) ct.delete(key);
      expect((await l.resolve('client1', tracked.name)).ipv4).toEqual([tracked.ipv4]);
      expect(dnsEntries().length).toBeGreaterThan(0);
      // Egress only: the same lookups (glibc, dnsmasq) open none, and still resolve and teach.
      await apply(false);
      for (const key of dnsEntries()) ct.delete(key);
      expect((await l.resolve('client1', untracked.name)).ipv4).toEqual([untracked.ipv4]);
      expect((await l.curl('client1', `http://${untracked.name}/`, { timeoutMs: 5000 })).httpStatus).toBe(200);
      expect(dnsEntries()).toEqual([]);
    } finally {
      ct.close();
      await apply(true);
    }
  }, 60_000);
});
