// Untracked DNS on the real kernel: an enforced workload's UDP DNS with the trusted servers is
// out of connection tracking, its genuine answers pass by the parser's verification (the
// answer mark), an unsolicited packet from a trusted server's address and port 53 does not,
// and a workload no policy selects keeps conntrack. The driver runs in the lab's node
// namespace as the agent would (test/scripts/run-driver.ts, unique table and pin root).
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfMap, MAP_NAMES, readCounters } from '@dnsplane/bpf-parser';
import { parseAddress } from '@dnsplane/core';
import type { Lab, LabProcess } from '../../../test/lab/lab.js';
import { useLab } from '../../../test/lab/vitest-lab.js';
import { waitFor } from '../../../test/lab/wait.js';
import { dnsResponse } from '../../../test/conformance/harness.js';
import { removeDriverLeftovers, writeDriverConfig } from './scripts/lab-config.js';

const SCRIPT = fileURLToPath(new URL('./scripts/run-driver.ts', import.meta.url));
const suffix = randomBytes(4).toString('hex');
const TABLE = `dnsplane_t${suffix}`;
const PIN_ROOT = `/sys/fs/bpf/dnsplane-t${suffix}`;

/**
 * client1: egress DNS only, ingress denied (so only what the rules admit reaches it); client3:
 * no policy. `dnsInterfaces`: dns.interfaces (default none listed: every interface).
 */
async function writeConfig(lab: Lab, dir: string, dnsInterfaces?: readonly string[]): Promise<string> {
  const config = await writeDriverConfig(lab, dir, { table: TABLE, pinRoot: PIN_ROOT, ...(dnsInterfaces === undefined ? {} : { dnsInterfaces }) });
  const dnsmasq = lab.dnsServers.dnsmasq;
  const client1 = lab.endpoints['client1'];
  const client3 = lab.endpoints['client3'];
  if (client1 === undefined || client3 === undefined) throw new Error('the lab needs client1 and client3');
  await writeFile(
    join(dir, 'policy.yaml'),
    [
      'kind: Policy',
      'metadata: { name: client1-dns }',
      'spec:',
      '  selector: app == "c1"',
      '  types: [Egress, Ingress]',
      '  egress:',
      ...['UDP', 'TCP'].flatMap((protocol) => [
        '    - action: Allow',
        `      protocol: ${protocol}`,
        `      destination: { nets: ["${dnsmasq.ipv4}/32", "${dnsmasq.ipv6}/128"], ports: [53] }`,
      ]),
      '    - action: Deny',
      '  ingress: []',
      '---',
      'kind: Endpoint',
      'metadata: { name: client1, labels: { app: c1 } }',
      `spec: { interface: ${client1.hostInterface} }`,
      '---',
      'kind: Endpoint',
      'metadata: { name: client3, labels: { app: free } }',
      `spec: { interface: ${client3.hostInterface} }`,
    ].join('\n'),
  );
  return config;
}

/** Packets counted by the rules of TABLE's `chain` whose comment starts with `label`. */
async function countedBy(lab: Lab, chain: string, label: string): Promise<number> {
  const result = await lab.exec('node', ['nft', 'list', 'chain', 'inet', TABLE, chain]);
  if (result.code !== 0) throw new Error(`nft list chain ${chain}: ${result.stderr}`);
  return result.stdout
    .split('\n')
    .filter((line) => line.includes(`comment "${label}`))
    .reduce((sum, line) => sum + Number(/counter packets (\d+)/.exec(line)?.[1] ?? 0), 0);
}

/** The node namespace's conntrack table (/proc/net/nf_conntrack is per network namespace). */
async function conntrackEntries(lab: Lab): Promise<string[]> {
  const result = await lab.exec('node', ['cat', '/proc/net/nf_conntrack']);
  if (result.code !== 0) throw new Error(`/proc/net/nf_conntrack: ${result.stderr}`);
  return result.stdout.split('\n').filter((line) => line.trim() !== '');
}

/** The parser's count of verified answers it gave the answer mark (from the pinned counters map). */
function answersMarked(): number {
  const map = BpfMap.fromPinned(join(PIN_ROOT, MAP_NAMES.counters));
  try {
    return readCounters(map)['answers_marked'] ?? 0;
  } finally {
    map.close();
  }
}

/** An address as /proc/net/nf_conntrack prints it: IPv6 in full (%pI6: eight groups of four digits). */
function conntrackAddress(address: string): string {
  const parsed = parseAddress(address);
  if (parsed?.family !== 6) return address;
  const bytes = Buffer.from(parsed.bytes);
  return Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16).padStart(4, '0')).join(':');
}

/** The DNS flows from `source` among conntrack's entries. */
function dnsFlowsOf(entries: readonly string[], protocol: 'udp' | 'tcp', source: string): string[] {
  return entries.filter((e) => e.includes(` ${protocol} `) && e.includes(`src=${conntrackAddress(source)} `) && e.includes('dport=53 '));
}

/** An nft script in the lab's node namespace (another firewall's table); throws with nft's message. */
async function nftScript(lab: Lab, script: string): Promise<void> {
  const result = await lab.exec('node', ['nft', '-f', '-'], { input: script });
  if (result.code !== 0) throw new Error(`nft -f in the node namespace: ${result.stderr}`);
}

/**
 * The driver script started afresh for each install (a new config each time): `install()`
 * stops the last one, starts the next and resolves to its status counters once installed.
 */
function restartingDriver(lab: () => Lab, dir: () => string, name: string) {
  let driver: LabProcess | undefined;
  let installs = 0;
  return {
    get process(): LabProcess | undefined {
      return driver;
    },
    async install(dnsInterfaces?: readonly string[]): Promise<Record<string, number>> {
      await driver?.stop();
      const config = await writeConfig(lab(), dir(), dnsInterfaces);
      installs += 1;
      driver = lab().startAgentProcess(['npx', 'tsx', SCRIPT, 'install', config], { name: `${name}-${suffix}-${installs}` });
      const line = await driver.waitForOutput(/"event":"installed"/, 60_000);
      return (JSON.parse(line) as { counters: Record<string, number> }).counters;
    },
  };
}

describe('nftables: enforced workloads\' UDP DNS out of connection tracking', () => {
  const lab = useLab({ clients: 3, freshNames: 50 });
  let dir = '';
  let driver: LabProcess | undefined;

  const conntrack = (): Promise<string[]> => conntrackEntries(lab());
  const ruleCounter = (chain: string, label: string): Promise<number> => countedBy(lab(), chain, label);
  const udpReceived = async (ns: 'client1' | 'client3'): Promise<number> => {
    const counters = await lab().netCounters(ns);
    return (counters['Udp.InDatagrams'] ?? 0) + (counters['Udp.NoPorts'] ?? 0);
  };

  beforeAll(async () => {
    const l = lab();
    dir = await mkdtemp(join(tmpdir(), 'dnsplane-nft-untracked-'));
    const config = await writeConfig(l, dir);
    driver = l.startAgentProcess(['npx', 'tsx', SCRIPT, 'install', config], { name: `nft-untracked-${suffix}` });
    await driver.waitForOutput(/"event":"installed"/, 60_000);
  }, 90_000);

  afterAll(() => removeDriverLeftovers(lab(), driver, { table: TABLE, pinRoot: PIN_ROOT, dir }), 60_000);

  it('a genuine UDP answer reaches the enforced workload (ingress deny-all) untracked; client3 (no policy) stays tracked', async () => {
    const l = lab();
    const client1 = l.endpoints['client1']!;
    const client3 = l.endpoints['client3']!;
    const markedBefore = answersMarked();
    const v4 = await l.resolve('client1', 'www.lab.test', { server: l.dnsServers.dnsmasq.ipv4 });
    expect(v4.ipv4).toContain('198.19.1.1');
    const v6 = await l.resolve('client1', 'www.lab.test', { server: l.dnsServers.dnsmasq.ipv6 });
    expect(v6.ipv6).toContain('fd00:19::1:1');
    // Not tracked (no flow in conntrack, checked at the end), yet through client1's ingress
    // deny-all: an untracked answer passes only by the verified-answer mark, which the parser
    // counts. (The untrack and verified-answer rules have no counters: every DNS packet of an
    // enforced workload runs them.)
    expect(answersMarked()).toBeGreaterThanOrEqual(markedBefore + 2);

    // the mark stays on the node: the veth into the workload's namespace scrubs it (a counter
    // on the answer mark in client1's own input hook sees none of its answers)
    const leak = `dnsplane_t${suffix}_leak`;
    const inClient = async (...args: string[]): Promise<string> => {
      const result = await l.exec('client1', ['nft', ...args]);
      if (result.code !== 0) throw new Error(`nft ${args.join(' ')} in client1: ${result.stderr}`);
      return result.stdout;
    };
    await inClient('add', 'table', 'inet', leak);
    try {
      await inClient('add', 'chain', 'inet', leak, 'in', '{ type filter hook input priority 0; policy accept; }');
      await inClient('add', 'rule', 'inet', leak, 'in', 'udp', 'sport', '53', 'counter');
      await inClient('add', 'rule', 'inet', leak, 'in', 'meta', 'mark', '&', '0x04000000', '!=', '0', 'counter');
      expect((await l.resolve('client1', 'api.lab.test', { server: l.dnsServers.dnsmasq.ipv4 })).ipv4).toContain('198.19.1.2');
      const counts = [...(await inClient('list', 'chain', 'inet', leak, 'in')).matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
      expect(counts[0]).toBeGreaterThan(0); // the marked answers arrived…
      expect(counts[1]).toBe(0); // …without the mark
    } finally {
      await inClient('delete', 'table', 'inet', leak);
    }

    const resolved3 = await l.resolve('client3', 'www.lab.test', { server: l.dnsServers.dnsmasq.ipv4 });
    expect(resolved3.ipv4).toContain('198.19.1.1');
    const entries = await conntrack();
    expect(dnsFlowsOf(entries, 'udp', client1.ipv4)).toEqual([]);
    expect(dnsFlowsOf(entries, 'udp', client1.ipv6)).toEqual([]);
    expect(dnsFlowsOf(entries, 'udp', client3.ipv4).length).toBeGreaterThan(0);
  }, 60_000);

  it('a UDP answer in IP fragments reaches the enforced workload too: the parser marks its first fragment, whose mark the reassembled datagram keeps', async () => {
    const l = lab();
    const before = await l.netCounters('client1');
    const markedBefore = answersMarked();
    // 64 AAAA records, ~1,850 bytes: dnsmasq sends them over UDP in two IPv4 fragments
    const dig = await l.exec('client1', ['dig', '+bufsize=4096', '+notcp', '+ignore', '+time=2', '+tries=1', `@${l.dnsServers.dnsmasq.ipv4}`, 'big.lab.test', 'AAAA'], { timeoutMs: 5000 });
    const after = await l.netCounters('client1');
    expect(dig.stdout).toMatch(/status: NOERROR/);
    expect([...dig.stdout.matchAll(/\sAAAA\s+\S+$/gm)]).toHaveLength(64);
    expect((after['Ip.ReasmOKs'] ?? 0) - (before['Ip.ReasmOKs'] ?? 0)).toBeGreaterThanOrEqual(1);
    // untracked (no flow) through the ingress deny-all: admitted by the mark
    expect(dnsFlowsOf(await conntrack(), 'udp', l.endpoints['client1']!.ipv4)).toEqual([]);
    expect(answersMarked()).toBeGreaterThan(markedBefore);
  }, 30_000);

  it('TCP DNS of the enforced workload stays tracked and answered', async () => {
    const l = lab();
    const client1 = l.endpoints['client1']!;
    const dig = await l.exec('client1', ['dig', '+tcp', '+short', '+time=2', '+tries=1', `@${l.dnsServers.dnsmasq.ipv4}`, 'www.lab.test', 'A'], { timeoutMs: 5000 });
    expect(dig.stdout.trim()).toBe('198.19.1.1');
    expect(dnsFlowsOf(await conntrack(), 'tcp', client1.ipv4).length).toBeGreaterThan(0);
  }, 30_000);

  it('an unsolicited UDP packet from a trusted server\'s address and port 53 is not delivered to the enforced workload', async () => {
    const l = lab();
    const client1 = l.endpoints['client1']!;
    const client3 = l.endpoints['client3']!;
    const dnsmasq = l.dnsServers.dnsmasq;
    const denyBefore = await ruleCounter('ep_client1_ingress', 'default deny');
    const received1 = await udpReceived('client1');
    const received3 = await udpReceived('client3');
    const payload = (id: number) => dnsResponse({ id, name: 'www.lab.test', type: 'A', address: '198.19.200.9', ttl: 300 });
    // To client1 first, then the same to client3 (no policy: delivered) — once client3 has it,
    // client1's went through the node before it.
    await l.forgeResponse({ to: { address: client1.ipv4, port: 40_053 }, fromAddress: dnsmasq.ipv4, payload: payload(0x5151) });
    await l.forgeResponse({ to: { address: client1.ipv6, port: 40_053 }, fromAddress: dnsmasq.ipv6, payload: payload(0x5152) });
    await l.forgeResponse({ to: { address: client3.ipv4, port: 40_053 }, fromAddress: dnsmasq.ipv4, payload: payload(0x5153) });
    await waitFor('the forged packet to reach client3', async () => ((await udpReceived('client3')) > received3 ? true : undefined), { timeoutMs: 5000 });
    await waitFor('client1\'s ingress default deny to count both forged packets', async () =>
      (await ruleCounter('ep_client1_ingress', 'default deny')) >= denyBefore + 2 ? true : undefined, { timeoutMs: 5000 });
    expect(await udpReceived('client1')).toBe(received1);
  }, 30_000);
});

describe('nftables: untracked DNS with dns.interfaces listed', () => {
  const lab = useLab({ clients: 3, freshNames: 10 });
  let dir = '';
  const driver = restartingDriver(lab, () => dir, 'nft-untracked-listed');
  const install = (interfaces: readonly string[]): Promise<Record<string, number>> => driver.install(interfaces);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dnsplane-nft-untracked-listed-'));
  });
  afterAll(() => removeDriverLeftovers(lab(), driver.process, { table: TABLE, pinRoot: PIN_ROOT, dir }), 60_000);

  it('untracks both families\' queries whose route leaves by a listed interface; with only the workload listed, none, and the answers still arrive', async () => {
    const l = lab();
    const client1 = l.endpoints['client1']!;
    const dnsSide = l.topology.dnsLink.hostInterface;
    /** client1's UDP DNS flows in conntrack, IPv4 and IPv6: none while its queries go untracked. */
    const tracked = async (): Promise<number[]> => {
      const entries = await conntrackEntries(l);
      return [dnsFlowsOf(entries, 'udp', client1.ipv4).length, dnsFlowsOf(entries, 'udp', client1.ipv6).length];
    };

    await install([client1.hostInterface, dnsSide]);
    expect((await l.resolve('client1', 'www.lab.test', { server: l.dnsServers.dnsmasq.ipv4 })).ipv4).toContain('198.19.1.1');
    expect((await l.resolve('client1', 'www.lab.test', { server: l.dnsServers.dnsmasq.ipv6 })).ipv6).toContain('fd00:19::1:1');
    expect(await tracked()).toEqual([0, 0]);

    // The DNS side unlisted: its answers could not be marked, so nothing is untracked — and
    // the answers reach client1 (ingress deny-all) as conntrack's established replies.
    await install([client1.hostInterface]);
    expect((await l.resolve('client1', 'api.lab.test', { server: l.dnsServers.dnsmasq.ipv4 })).ipv4).toContain('198.19.1.2');
    expect((await l.resolve('client1', 'api.lab.test', { server: l.dnsServers.dnsmasq.ipv6 })).ipv4).toContain('198.19.1.2');
    const [v4, v6] = await tracked();
    expect(v4).toBeGreaterThan(0);
    expect(v6).toBeGreaterThan(0);
  }, 120_000);
});

describe('nftables: untracked DNS next to another stateful firewall (untrackDns: auto)', () => {
  const lab = useLab({ clients: 3, freshNames: 10 });
  let dir = '';
  const FIREWALL = `dplfw${suffix}`;
  const driver = restartingDriver(lab, () => dir, 'nft-untracked-fw');
  const install = (): Promise<Record<string, number>> => driver.install();
  const untrackChain = async (): Promise<boolean> => (await lab().exec('node', ['nft', 'list', 'chain', 'inet', TABLE, 'prerouting_untrack'])).code === 0;
  const firewall = async (present: boolean): Promise<void> => {
    const l = lab();
    const workloads = ['client1', 'client3'].map((name) => `"${l.endpoints[name]!.hostInterface}"`).join(', ');
    // What Docker's or ufw's FORWARD amounts to: replies by state, the workloads' own traffic, nothing else.
    await nftScript(
      l,
      present
        ? `table inet ${FIREWALL} {\n  chain forward { type filter hook forward priority 10; policy drop;\n    ct state established,related accept\n    iifname { ${workloads} } accept\n  }\n}\n`
        : `table inet ${FIREWALL}\ndelete table inet ${FIREWALL}\n`,
    );
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dnsplane-nft-untracked-fw-'));
  });
  afterAll(async () => {
    await firewall(false).catch(() => undefined);
    await removeDriverLeftovers(lab(), driver.process, { table: TABLE, pinRoot: PIN_ROOT, dir });
  }, 60_000);

  it('an install with the firewall there keeps DNS tracked, so its answers pass the firewall; without it DNS is untracked again', async () => {
    const l = lab();
    const client1 = l.endpoints['client1']!;
    const server = { server: l.dnsServers.dnsmasq.ipv4 };
    expect((await install())['untrack_dns_gates']).toBe(0);
    expect(await untrackChain()).toBe(true);
    expect((await l.resolve('client1', 'www.lab.test', server)).ipv4).toContain('198.19.1.1');

    // The firewall comes after that install: untracked answers are not `established` to it —
    // the lookup fails. (The agent's drift check notices the new table and installs again.)
    await firewall(true);
    expect((await l.resolve('client1', 'api.lab.test', server)).code).not.toBe(0);

    // An install now sees it: DNS stays tracked, the answers pass as the firewall's established replies.
    expect((await install())['untrack_dns_gates']).toBe(1);
    expect(await untrackChain()).toBe(false);
    expect((await l.resolve('client1', 'api.lab.test', server)).ipv4).toContain('198.19.1.2');
    expect((await l.resolve('client1', 'www.lab.test', { server: l.dnsServers.dnsmasq.ipv6 })).ipv6).toContain('fd00:19::1:1');
    const tracked = await conntrackEntries(l);
    expect(tracked.some((e) => e.includes(' udp ') && e.includes(`src=${client1.ipv4} `) && e.includes('dport=53 '))).toBe(true);

    // The firewall gone: the next install untracks again.
    await firewall(false);
    expect((await install())['untrack_dns_gates']).toBe(0);
    expect(await untrackChain()).toBe(true);
    expect((await l.resolve('client1', 'www.lab.test', server)).ipv4).toContain('198.19.1.1');
  }, 120_000);

  it('a masquerade in another table keeps DNS tracked, so the queries leave translated (an untracked one would not be)', async () => {
    const l = lab();
    const client1 = l.endpoints['client1']!;
    const dnsLink = l.topology.dnsLink;
    const NAT = `dplnat${suffix}`;
    const nft = (script: string): Promise<void> => nftScript(l, script);
    await nft(`table ip ${NAT} {\n  chain post { type nat hook postrouting priority srcnat; policy accept;\n    oifname "${dnsLink.hostInterface}" masquerade\n  }\n}\n`);
    try {
      expect((await install())['untrack_dns_gates']).toBe(1);
      expect(await untrackChain()).toBe(false);
      // client1's UDP DNS flows: client port → where the reply goes
      const dnsFlows = async (): Promise<Map<string, string | undefined>> => {
        return new Map(
          (await conntrackEntries(l))
            .filter((e) => e.includes(' udp ') && e.includes(`src=${client1.ipv4} `) && e.includes('dport=53 '))
            .map((e) => [/ sport=(\d+) dport=53 /.exec(e)?.[1] ?? '', /dport=53 .*?src=\S+ dst=(\S+) sport=53 /.exec(e)?.[1]]),
        );
      };
      const before = await dnsFlows();
      expect((await l.resolve('client1', 'api.lab.test', { server: l.dnsServers.dnsmasq.ipv4 })).ipv4).toContain('198.19.1.2');
      // this lookup's flows answer to the node's side of the DNS link: translated on the way out
      const replyTo = [...(await dnsFlows())].filter(([port]) => !before.has(port)).map(([, to]) => to);
      expect(replyTo.length).toBeGreaterThan(0);
      expect(new Set(replyTo)).toEqual(new Set([dnsLink.gateway.ipv4]));
    } finally {
      await nft(`table ip ${NAT}\ndelete table ip ${NAT}\n`);
    }
    expect((await install())['untrack_dns_gates']).toBe(0);
  }, 120_000);
});
