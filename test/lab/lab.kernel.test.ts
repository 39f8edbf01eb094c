// The lab itself, on the real kernel: it comes up, its DNS servers and web server behave as
// documented, the untrusted namespace can forge, and teardown leaves nothing behind on every
// path (normal, failing test, SIGTERM, SIGKILL + sweeper).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { dnsCrossings, dnsSightings, startCapture } from './capture.js';
import { createLab, NAMES, sweepStaleLabs, type Lab } from './lab.js';
import { isProcessRunning, processStartTime } from './process.js';
import { labDirectory, stateFile } from './registry.js';
import { useLab } from './vitest-lab.js';
import { waitFor } from './wait.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');

function ipNetnsList(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name !== '');
}

function processGone(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /\) [ZX] /.test(state);
  } catch {
    return true;
  }
}

/** Asserts that nothing of lab `id` is left: namespaces, processes, /etc/netns, state. */
async function expectNothingLeft(id: string, namespaces: readonly string[], pids: readonly number[]): Promise<void> {
  await waitFor(`processes of lab ${id} to be gone`, () => (pids.every(processGone) ? true : undefined), { timeoutMs: 5000 });
  const listed = ipNetnsList();
  for (const ns of namespaces) {
    expect(listed).not.toContain(ns);
    expect(existsSync(`/etc/netns/${ns}`)).toBe(false);
  }
  expect(existsSync(stateFile(id))).toBe(false);
  expect(existsSync(labDirectory(id))).toBe(false);
}

function allNamespacesOf(lab: Lab): string[] {
  return [...Object.values(lab.namespaces), ...Object.values(lab.endpoints).map((endpoint) => endpoint.namespace)];
}

describe('lab', () => {
  const lab = useLab();

  it('builds its own namespaces, routed by the node namespace, without touching the root namespace', async () => {
    const { id, namespaces, endpoints } = lab();
    expect(id).toMatch(/^[a-z0-9]{6}$/);
    const listed = ipNetnsList();
    for (const ns of allNamespacesOf(lab())) expect(listed).toContain(ns);
    expect(Object.keys(endpoints)).toEqual(['client1', 'client2']);
    const client1 = endpoints.client1!;
    expect(client1.hostInterface).toBe(`dpl${id}c1`);
    expect(client1.hostInterface.length).toBeLessThanOrEqual(15);
    // The host-side interface is in the node namespace, not in the root namespace.
    expect((await lab().exec('node', ['ip', 'link', 'show', 'dev', client1.hostInterface])).code).toBe(0);
    expect(spawnSync('ip', ['link', 'show', 'dev', client1.hostInterface]).status).not.toBe(0);
    expect((await lab().exec('node', ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim()).toBe('1');
    // In the node namespace, /sys shows the namespace's interfaces and the machine's bpffs.
    expect((await lab().exec('node', ['ls', '/sys/class/net'])).stdout.split('\n')).toContain(client1.hostInterface);
    const bpffs = await lab().exec('node', ['stat', '-f', '-c', '%T', '/sys/fs/bpf']);
    expect(bpffs.stdout.trim()).toBe('bpf_fs');
    const rootPins = spawnSync('ls', ['/sys/fs/bpf'], { encoding: 'utf8' }).stdout;
    expect((await lab().exec('node', ['ls', '/sys/fs/bpf'])).stdout).toBe(rootPins);
    // resolv.conf of a workload names the lab's dnsmasq.
    const resolvConf = await lab().exec('client1', ['cat', '/etc/resolv.conf']);
    expect(resolvConf.stdout).toContain(`nameserver ${lab().dnsServers.dnsmasq.ipv4}`);
    expect(existsSync(`/etc/netns/${namespaces.node}`)).toBe(false);
    expect(lab().trustedServers).toEqual(['198.18.53.2:53', '[fd00:18:53::2]:53', '198.18.53.3:53', '[fd00:18:53::3]:53']);
  });

  const servers = [
    ['dnsmasq over IPv4', () => lab().dnsServers.dnsmasq.ipv4],
    ['dnsmasq over IPv6', () => lab().dnsServers.dnsmasq.ipv6],
    ['unbound over IPv4', () => lab().dnsServers.unbound.ipv4],
    ['unbound over IPv6', () => lab().dnsServers.unbound.ipv6],
  ] as const;

  it.each(servers)('glibc resolves the zone through %s', async (_label, server) => {
    const resolve = (name: string) => lab().resolve('client1', name, { server: server() });
    const www = await resolve(NAMES.www.name);
    expect(www.code).toBe(0);
    expect(www.ipv4).toEqual([NAMES.www.ipv4]);
    expect(www.ipv6).toEqual([NAMES.www.ipv6]);
    // Three CNAMEs deep, asked in mixed case.
    const chain = await resolve(NAMES.chain.names[0].toUpperCase().replace('CHAIN', 'Chain'));
    expect(new Set(chain.addresses)).toEqual(new Set([NAMES.chain.ipv4, NAMES.chain.ipv6]));
    for (const name of [`x${Date.now()}.${NAMES.wildcard.domain}`, `a.b.${NAMES.wildcard.domain}`]) {
      expect(new Set((await resolve(name)).addresses)).toEqual(new Set([NAMES.wildcard.ipv4, NAMES.wildcard.ipv6]));
    }
    const fresh = lab().zone.fresh[41]!;
    expect(new Set((await resolve(fresh.name)).addresses)).toEqual(new Set([fresh.ipv4, fresh.ipv6]));
    expect((await resolve(`missing.${NAMES.www.name}`)).code).toBe(2);
  });

  it.each(servers)('%s serves the TTLs of 1–5 s as configured', async (_label, server) => {
    for (const entry of NAMES.ttl) {
      const dig = await lab().exec('client1', ['dig', '+noall', '+answer', `@${server()}`, entry.name, 'A']);
      expect(dig.stdout.trim().split(/\s+/)).toEqual([`${entry.name}.`, String(entry.ttl), 'IN', 'A', entry.ipv4]);
    }
  });

  it.each(servers)('%s truncates the 40-A answer over UDP and glibc retries over TCP', async (_label, server) => {
    // Without EDNS (as glibc asks), the answer does not fit in 512 bytes: TC is set.
    const udp = await lab().exec('client1', ['dig', '+noedns', '+ignore', '+time=2', `@${server()}`, NAMES.many.name, 'A']);
    expect(udp.stdout).toMatch(/flags: [a-z ]*\btc\b/);
    const before = await lab().netCounters('dns');
    const resolved = await lab().resolve('client1', NAMES.many.name, { server: server() });
    const after = await lab().netCounters('dns');
    expect(resolved.code).toBe(0);
    expect(new Set(resolved.ipv4)).toEqual(new Set(NAMES.many.ipv4));
    // The DNS namespace accepted a TCP connection during the lookup: the retry went over TCP.
    expect((after['Tcp.PassiveOpens'] ?? 0) - (before['Tcp.PassiveOpens'] ?? 0)).toBeGreaterThanOrEqual(1);
  });

  it('serves HTTP on every zone address, port 80, 443 and 8080, over IPv4 and IPv6 (no dataplane: all allowed)', async () => {
    const urls = [
      [`http://${NAMES.www.ipv4}/`, NAMES.www.ipv4, 80],
      [`http://[${NAMES.www.ipv6}]:443/`, NAMES.www.ipv6, 443],
      [`http://${lab().zone.fresh[999]!.ipv4}:8080/`, lab().zone.fresh[999]!.ipv4, 8080],
      [`http://${NAMES.many.ipv4[39]}/`, NAMES.many.ipv4[39]!, 80],
    ] as const;
    for (const [url, address, port] of urls) {
      const result = await lab().curl('client2', url);
      expect(result.code, result.stderr).toBe(0);
      expect(result.httpStatus).toBe(200);
      expect(result.body).toBe(`lab-web ${address} ${port}\n`);
    }
    // By name, through the workload's resolver, on both families.
    const v4 = await lab().curl('client1', `http://${NAMES.api.name}:8080/`, { args: ['-4'] });
    expect(v4.body).toBe(`lab-web ${NAMES.api.ipv4} 8080\n`);
    const v6 = await lab().curl('client1', `http://${NAMES.chain.names[0]}/`, { args: ['-6'] });
    expect(v6.body).toBe(`lab-web ${NAMES.chain.ipv6} 80\n`);
  });

  it('echoes a UDP datagram of 3,000 bytes whole, fragmented both ways on the 1,500-byte links, from the address it was sent to (IPv4 and IPv6)', async () => {
    const echo = await lab().startUdpEcho([NAMES.www.ipv4, NAMES.www.ipv6].map((address) => ({ address, port: 7100 })));
    for (const [address, fragmentsMade] of [[NAMES.www.ipv4, 'Ip.FragCreates'], [NAMES.www.ipv6, 'Ip6.FragCreates']] as const) {
      const before = await lab().netCounters('client2');
      expect(await lab().udpExchange('client2', address, 7100, 3000, 3000)).toBe(3000);
      const after = await lab().netCounters('client2');
      expect((after[fragmentsMade] ?? 0) - (before[fragmentsMade] ?? 0)).toBeGreaterThanOrEqual(2);
    }
    expect(echo.stdout().split('\n').filter((line) => line.startsWith('received 3000 ')).length).toBe(2);
    // nothing listens there: no reply
    expect(await lab().udpExchange('client2', NAMES.www.ipv4, 7101, 100, 500)).toBeUndefined();
  });

  it('runs 200 resolve-then-connect trials to fresh addresses in one process, each first SYN answered', async () => {
    const fresh = lab().allocateFresh(200);
    const batch = await lab().connectAfterResolveBatch(
      'client1',
      fresh.map((entry) => ({ name: entry.name, port: 80 })),
    );
    expect(batch.trials).toHaveLength(200);
    expect(batch.trials.map((trial) => trial.address)).toEqual(fresh.map((entry) => entry.ipv4));
    expect(batch.trials.filter((trial) => !trial.connected)).toEqual([]);
    expect(batch.cleanConnects).toBe(200);
    expect(batch.counters.synRetransmits).toBe(0);
    expect(batch.counters.activeOpens).toBe(200);
    // The client reacts to the answer within a millisecond: connect() is called in the callback
    // that received the answer, and the SYN is in the kernel within 1 ms. Asserted here on the
    // median, which a slow phase of the shared 2-core VM does not move past 1 ms; the tail (p95)
    // is a figure of `npm run bench:enforce` ("client check"), where timing belongs.
    const median = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    expect(median(batch.trials.map((trial) => trial.answerToConnectUs ?? Infinity))).toBeLessThan(1000);
    expect(median(batch.trials.map((trial) => trial.answerToSynUs ?? Infinity))).toBeLessThan(1000);
    expect(batch.durationMs).toBeLessThan(20_000);
    // IPv6 through unbound, and a fresh pool that never hands a name out twice.
    const [v6] = lab().allocateFresh(1);
    const trial = await lab().connectAfterResolve('client2', v6!.name, 443, { type: 'AAAA', server: { address: lab().dnsServers.unbound.ipv6 } });
    expect(trial).toMatchObject({ address: v6!.ipv6, connected: true, synRetransmitted: false, rcode: 0 });
    expect(fresh.map((entry) => entry.name)).not.toContain(v6!.name);
  });

  it('times DNS messages crossing the node from packet captures at both edges: every query and answer paired, each crossing shorter than the exchange', async () => {
    const l = lab();
    const client = await startCapture(l, 'client1', 'test-capture-client', join(l.directory, 'test-client.pcap'), 'udp port 53');
    const server = await startCapture(l, 'dns', 'test-capture-dns', join(l.directory, 'test-dns.pcap'), 'udp port 53');
    const input = JSON.stringify({
      servers: [{ address: l.dnsServers.dnsmasq.ipv4, port: 53 }],
      queries: Array.from({ length: 20 }, () => ({ name: NAMES.www.name, server: 0 })),
      gapMs: 2,
      timeoutMs: 2000,
      stamps: true,
    });
    const timing = await l.exec('client1', ['node', '--import', 'tsx', join(HERE, 'scripts', 'dns-timing.ts')], { input, timeoutMs: 60_000 });
    expect(timing.code, timing.stderr).toBe(0);
    const out = JSON.parse(timing.stdout) as { us: Array<number | null>; keys: string[] };
    expect(out.us.every((us) => us !== null)).toBe(true);
    const clientSide = dnsSightings((await client.stop(40)).records);
    const serverSide = dnsSightings((await server.stop(40)).records);
    expect(clientSide).toHaveLength(40);
    expect(serverSide).toHaveLength(40);
    const crossings = dnsCrossings(clientSide, serverSide);
    out.keys.forEach((key, i) => {
      const crossing = crossings.get(key);
      expect(crossing?.queryUs, key).toBeGreaterThan(0);
      expect(crossing?.answerUs, key).toBeGreaterThan(0);
      // the client's time also holds the server's work and both ends' scheduling
      expect(crossing!.queryUs! + crossing!.answerUs!, key).toBeLessThan(out.us[i]!);
    });
  });

  it('reports a connect that nothing answers as a lost first SYN', async () => {
    // A route in the node namespace that silently discards this one address makes its SYN vanish.
    const [lost] = lab().allocateFresh(1);
    const route = await lab().exec('node', ['ip', 'route', 'add', 'blackhole', `${lost!.ipv4}/32`]);
    expect(route.code, route.stderr).toBe(0);
    const trial = await lab().connectAfterResolve('client1', lost!.name, 80, { connectTimeoutMs: 1200 });
    expect(trial.connected).toBe(false);
    expect(trial.synRetransmitted).toBe(true);
  });

  it.each([
    ['IPv4', () => lab().dnsServers.dnsmasq.ipv4, () => lab().endpoints.client1!.ipv4],
    ['IPv6', () => lab().dnsServers.unbound.ipv6, () => lab().endpoints.client1!.ipv6],
  ] as const)('the untrusted namespace delivers a forged DNS response over %s', async (_label, server, client) => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const receiver = lab().exec(
      'client1',
      [
        'python3',
        '-c',
        [
          'import socket, sys, json',
          `s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)`,
          's.bind((sys.argv[1], int(sys.argv[2])))',
          's.settimeout(8)',
          'data, source = s.recvfrom(4096)',
          'print(json.dumps({"from": source[0], "port": source[1], "payload": data.hex()}))',
        ].join('\n'),
        client(),
        String(port),
      ],
      { timeoutMs: 10_000 },
    );
    await waitFor(
      `client1 to listen on UDP port ${port}`,
      async () => ((await lab().exec('client1', ['ss', '-Hnlu', `sport = :${port}`])).stdout.trim() !== '' ? true : undefined),
      { timeoutMs: 5000 },
    );
    const forged = dnsPacket.encode({
      type: 'response',
      id: 4242,
      flags: dnsPacket.AUTHORITATIVE_ANSWER,
      questions: [{ type: 'A', name: NAMES.blocked.name, class: 'IN' }],
      answers: [{ type: 'A', name: NAMES.blocked.name, ttl: 60, data: '198.19.250.250' }],
    });
    await lab().forgeResponse({ to: { address: client(), port }, fromAddress: server(), payload: forged });
    const received = await receiver;
    expect(received.code, received.stderr).toBe(0);
    const report = JSON.parse(received.stdout) as { from: string; port: number; payload: string };
    expect(report.from).toBe(server());
    expect(report.port).toBe(53);
    const decoded = dnsPacket.decode(Buffer.from(report.payload, 'hex'));
    expect(decoded.answers?.[0]).toMatchObject({ name: NAMES.blocked.name, data: '198.19.250.250' });
  });
});

describe('lab teardown', () => {
  it('leaves nothing behind after a failing test, and destroy() is idempotent', async () => {
    const lab = await createLab({ clients: 1, freshNames: 10 });
    const namespaces = allNamespacesOf(lab);
    const agent = lab.startAgentProcess(['sleep', '600']);
    const pids = [agent.pid, ...[...lab.processes.values()].map((handle) => handle.pid)];
    // A stray process started by exec in a lab namespace goes too.
    const stray = lab.exec('client1', ['sleep', '600'], { timeoutMs: 60_000 });
    await waitFor('the stray sleep to run', () => (spawnSync('ip', ['netns', 'pids', lab.endpoints.client1!.namespace], { encoding: 'utf8' }).stdout.trim() !== '' ? true : undefined), { timeoutMs: 5000 });
    const failing = async (): Promise<void> => {
      try {
        throw new Error('simulated test failure');
      } finally {
        await lab.destroy();
      }
    };
    await expect(failing()).rejects.toThrow('simulated test failure');
    expect(lab.destroyed).toBe(true);
    // The stray exec was killed; its late exit must not bring the state file back.
    expect((await stray).code).not.toBe(0);
    await expectNothingLeft(lab.id, namespaces, pids);
    const again = await lab.destroy();
    expect(again.id).toBe(lab.id);
    await expect(lab.exec('client1', ['true'])).rejects.toThrow(/destroyed/);
  });

  async function holdLab(): Promise<{ child: ReturnType<typeof spawn>; id: string; namespaces: string[]; pids: number[] }> {
    const child = spawn('node', ['--import', 'tsx', join(HERE, 'fixtures', 'hold-lab.ts')], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const line = await waitFor(
      'the lab-holding child to report its lab',
      () => {
        if (child.exitCode !== null) throw new Error(`child exited ${child.exitCode}: ${stderr}`);
        return stdout.includes('\n') ? stdout.split('\n')[0] : undefined;
      },
      { timeoutMs: 30_000 },
    );
    return { child, ...(JSON.parse(line!) as { id: string; namespaces: string[]; pids: number[] }) };
  }

  it('tears down when the owning process gets SIGTERM', async () => {
    const held = await holdLab();
    for (const ns of held.namespaces) expect(ipNetnsList()).toContain(ns);
    const exited = new Promise((resolve) => held.child.once('exit', resolve));
    held.child.kill('SIGTERM');
    await exited;
    await expectNothingLeft(held.id, held.namespaces, held.pids);
  });

  it('sweeps the lab of a SIGKILLed owner, and only that one', async () => {
    const held = await holdLab();
    const exited = new Promise((resolve) => held.child.once('exit', resolve));
    held.child.kill('SIGKILL');
    await exited;
    // Nothing ran the owner's cleanup: the lab is still there…
    expect(ipNetnsList()).toContain(held.namespaces[0]);
    expect(held.pids.some((pid) => !processGone(pid))).toBe(true);
    // …until the sweeper sees that its owner is gone. Our own lab (owner alive) stays.
    const ours = await createLab({ clients: 1, freshNames: 1, sweep: false });
    try {
      // (Another test run's createLab() may sweep it first; then it is simply gone already.)
      const stillRecorded = existsSync(stateFile(held.id));
      const swept = sweepStaleLabs();
      if (stillRecorded) expect(swept.map((report) => report.id)).toContain(held.id);
      expect(swept.map((report) => report.id)).not.toContain(ours.id);
      await expectNothingLeft(held.id, held.namespaces, held.pids);
      expect(ipNetnsList()).toContain(ours.namespaces.node);
      expect(isProcessRunning(process.pid, processStartTime(process.pid) ?? '')).toBe(true);
    } finally {
      await ours.destroy();
    }
  });
});
