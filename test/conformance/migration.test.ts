// Migration between dataplanes on the real kernel (issue 7): while a workload keeps opening
// connections to an allowed name and a denied name — by address, resolved ONCE before the run —
// and holds one long-lived TCP connection, the real agent (compiled CLI, in the lab's node
// namespace) migrates iptables → nftables → ebpf (when registered) → iptables, with `dnsplane
// migrate --to` and with restarts after SIGTERM and SIGKILL whose config names another
// dataplane. Then `dnsplane uninstall` leaves nothing named dnsplane behind.
//
// Asserted: zero failed (or SYN-retransmitted) allowed connections, zero successful denied
// connections, the long-lived connection echoes on every round from first to last step, and no
// DNS query is sent after the initial resolution (the lab's client never resolves again).
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsParserProgram } from '@dnsplane/bpf-parser';
import { DRIVERS } from '../../packages/agent/src/drivers.js';
import { createLab, type Lab, type LabProcess } from '../lab/lab.js';
import { waitFor } from '../lab/wait.js';
import { DNSPLANE_BIN, REPO_ROOT } from './harness.js';

const ECHO_PORT = 9000;
const registered = DRIVERS.map((d) => d.kind as string);
type Kind = 'iptables' | 'nftables' | 'ebpf';

// The workload's prober: connects to the allowed and the denied address in turn (by address:
// no DNS), and echoes one line per round over one long-lived connection. One JSON line per
// event; stops on SIGTERM. The short pause between rounds paces it (it synchronises nothing).
const CLIENT = `
import json, signal, socket, sys, time
cfg = json.loads(sys.argv[1])
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
def emit(o):
    sys.stdout.write(json.dumps(o) + "\\n"); sys.stdout.flush()
def attempt(addr, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    t = time.monotonic()
    wall = time.time()
    try:
        s.connect((addr, port)); ok, err = True, None
    except OSError as e:
        ok, err = False, type(e).__name__ + ":" + str(e)
    ms = (time.monotonic() - t) * 1000
    s.close()
    return ok, err, ms, wall
long = socket.create_connection((cfg["allowed"], cfg["echoPort"]), timeout=3)
long.settimeout(3)
lport = long.getsockname()[1]
emit({"event": "long_open", "localPort": lport})
buf = b""
seq = 0
broken = False
while running:
    ok, err, ms, wall = attempt(cfg["allowed"], 80, 2.5)
    emit({"event": "allowed", "ok": ok, "err": err, "ms": ms, "t": wall})
    ok, err, ms, wall = attempt(cfg["denied"], 80, 0.4)
    emit({"event": "denied", "ok": ok, "err": err, "ms": ms, "t": wall})
    if not broken:
        seq += 1
        try:
            long.sendall(("%d\\n" % seq).encode())
            while b"\\n" not in buf:
                chunk = long.recv(64)
                if not chunk: raise OSError("closed by peer")
                buf += chunk
            line, buf = buf.split(b"\\n", 1)
            emit({"event": "long", "ok": line == str(seq).encode(), "seq": seq, "t": time.time()})
        except OSError as e:
            broken = True
            emit({"event": "long", "ok": False, "seq": seq, "err": str(e), "t": time.time()})
    time.sleep(0.05)
emit({"event": "done", "rounds": seq, "localPort": lport})
`;

// A line echo server for the long-lived connection, in the web namespace.
const ECHO = `
import socket, threading
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", ${ECHO_PORT})); srv.listen(16)
print("listening", flush=True)
def serve(c):
    with c:
        while True:
            d = c.recv(4096)
            if not d: return
            c.sendall(d)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

interface ClientEvent {
  readonly event: string;
  readonly ok?: boolean;
  readonly err?: string | null;
  readonly ms?: number;
  readonly seq?: number;
  readonly t?: number;
}

let lab: Lab | undefined;
let directory = '';
let configPath = '';
let socketPath = '';
let statePath = '';
const pinRoot = `/sys/fs/bpf/dnsplane-m${randomBytes(4).toString('hex')}`;
const learnedEventsInForce = (): boolean => DnsParserProgram.learnedEventsPinned(pinRoot);
const children: ChildProcessWithoutNullStreams[] = [];
let agents = 0;

function netnsArgv(ns: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=/run/netns/${ns}`, ...argv];
}

function startChild(ns: string, argv: readonly string[]): { child: ChildProcessWithoutNullStreams; output: () => string } {
  const full = netnsArgv(ns, argv);
  const child = spawn(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  return { child, output: () => out };
}

function writeConfig(dataplane: Kind, backend: 'legacy' | 'nft' | 'auto' = 'auto'): void {
  const live = lab!;
  const config = {
    dataplane,
    // A long minTTL: learned entries must outlive the test (nothing is re-resolved).
    dns: { trustedServers: [...live.trustedServers], minTTL: 900, extraTTL: 10 },
    resources: ['./policies'],
    statePath,
    log: { level: 'info' },
    iptables: { backend },
    bpf: { pinRoot },
  };
  const temporary = join(directory, '.dnsplane.yaml.tmp');
  writeFileSync(temporary, `${JSON.stringify(config, null, 2)}\n`);
  spawnSync('mv', [temporary, configPath]);
}

function cli(args: readonly string[], timeoutMs = 60_000): { code: number; stdout: string; stderr: string } {
  const result = spawnSync('node', [DNSPLANE_BIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: timeoutMs });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

interface StatusView {
  readonly dataplane: string;
  readonly learned: number;
  readonly lastApply?: unknown;
  readonly migrations: ReadonlyArray<{ from: string; to: string; removeFailed?: string }>;
}

function status(): StatusView | undefined {
  const result = cli(['status', '--json', '--socket', socketPath], 15_000);
  return result.code === 0 ? (JSON.parse(result.stdout) as StatusView) : undefined;
}

async function startAgent(expected: Kind): Promise<LabProcess> {
  agents += 1;
  const agent = lab!.startAgentProcess(['node', DNSPLANE_BIN, 'run', '-c', configPath, '--socket', socketPath], { name: `dnsplane-${agents}` });
  await waitFor(
    `the agent to run ${expected}`,
    () => {
      if (agent.exited) throw new Error(`the agent exited: ${agent.stderr().slice(-2000)}`);
      const s = status();
      return s !== undefined && s.dataplane === expected && s.lastApply !== undefined ? s : undefined;
    },
    { timeoutMs: 60_000, stopOn: (error) => error instanceof Error && error.message.startsWith('the agent exited') },
  );
  return agent;
}

/** Warning and error log lines of every agent run so far (pino level ≥ 40), shortened. */
function agentWarnings(): string {
  const lines: string[] = [];
  for (const process of lab?.processes.values() ?? []) {
    if (!process.argv.includes(DNSPLANE_BIN)) continue;
    for (const line of process.stderr().split('\n')) {
      if (/"level":(4|5|6)\d/.test(line)) lines.push(`${process.argv.join(' ').slice(-20)}: ${line.slice(0, 400)}`);
    }
  }
  return lines.length === 0 ? '(none)' : `\n${lines.join('\n')}`;
}

/** Waits until the client has done `rounds` more rounds (each: allowed, denied, long echo). */
async function moreRounds(events: () => ClientEvent[], rounds: number): Promise<void> {
  const start = events().filter((e) => e.event === 'long').length;
  await waitFor(`${rounds} more client rounds`, () => (events().filter((e) => e.event === 'long').length >= start + rounds ? true : undefined), {
    timeoutMs: 30_000,
  });
}

function tcpProbe(ns: string, address: string, port: number, timeoutS: number): boolean {
  const script = `import socket,sys\ns=socket.socket();s.settimeout(${timeoutS})\ntry:\n s.connect(("${address}",${port}));print("ok")\nexcept OSError:\n print("no")`;
  const result = spawnSync(netnsArgv(ns, ['python3', '-c', script])[0]!, netnsArgv(ns, ['python3', '-c', script]).slice(1), { encoding: 'utf8' });
  return result.stdout.trim() === 'ok';
}

beforeAll(async () => {
  lab = await createLab({ clients: 1, freshNames: 10 });
  directory = mkdtempSync(join(tmpdir(), 'dnsplane-migration-'));
  configPath = join(directory, 'dnsplane.yaml');
  socketPath = join(directory, 'agent.sock');
  statePath = join(directory, 'state', 'state.json');
  mkdirSync(join(directory, 'policies'));
  const client = lab.endpoints['client1']!;
  const dns = [...lab.dnsServerNets];
  writeFileSync(
    join(directory, 'policies', 'resources.yaml'),
    [
      { kind: 'Endpoint', metadata: { name: 'client1', labels: { app: 'c1' } }, spec: { interface: client.hostInterface, addresses: [client.ipv4, client.ipv6] } },
      {
        kind: 'Policy',
        metadata: { name: 'c1-egress' },
        spec: {
          order: 10,
          selector: 'app == "c1"',
          egress: [
            { action: 'Allow', protocol: 'UDP', destination: { nets: dns, ports: [53] } },
            { action: 'Allow', protocol: 'TCP', destination: { nets: dns, ports: [53] } },
            { action: 'Allow', protocol: 'TCP', destination: { domains: [lab.names.www.name], ports: [80, ECHO_PORT] } },
            { action: 'Deny' },
          ],
        },
      },
    ]
      .map((d) => JSON.stringify(d))
      .join('\n---\n'),
  );
}, 120_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL');
  try {
    if (lab && !lab.destroyed) {
      for (const agent of lab.processes.values()) if (agent.argv.includes(DNSPLANE_BIN) && !agent.exited) await agent.stop(5000);
      spawnSync('nsenter', [`--net=/run/netns/${lab.namespaces.node}`, 'node', DNSPLANE_BIN, 'uninstall', '-c', configPath, '--socket', socketPath], {
        encoding: 'utf8',
        timeout: 60_000,
      });
    }
  } finally {
    rmSync(pinRoot, { recursive: true, force: true });
    await lab?.destroy();
    if (directory !== '') rmSync(directory, { recursive: true, force: true });
  }
}, 120_000);

describe('migration between dataplanes (real agent, real kernel)', () => {
  it('iptables → nftables → ebpf → iptables with migrate, SIGTERM and SIGKILL: no allowed connection fails, no denied one passes, the long connection survives', async () => {
    const live = lab!;
    const client = live.namespace('client1');
    const allowed = live.names.www.ipv4;
    const denied = live.names.api.ipv4;
    const echo = startChild(live.namespaces.web, ['python3', '-c', ECHO]);
    await waitFor('the echo server', () => (echo.output().includes('listening') ? true : undefined), { timeoutMs: 10_000 });

    writeConfig('iptables', 'legacy');
    const first = await startAgent('iptables');
    // Not learned yet: the allowed name's address is denied.
    expect(tcpProbe(client, allowed, 80, 0.5)).toBe(false);
    // The one and only resolution of the run.
    const www = await live.resolve('client1', live.names.www.name);
    const api = await live.resolve('client1', live.names.api.name);
    expect(www.ipv4).toContain(allowed);
    expect(api.ipv4).toContain(denied);
    expect(tcpProbe(client, allowed, 80, 2)).toBe(true);
    expect(tcpProbe(client, denied, 80, 0.5)).toBe(false);
    expect(learnedEventsInForce()).toBe(false); // iptables reads none

    const prober = startChild(client, ['python3', '-c', CLIENT, JSON.stringify({ allowed, denied, echoPort: ECHO_PORT })]);
    const events = (): ClientEvent[] =>
      prober
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as ClientEvent);
    await waitFor('the long-lived connection', () => (events().some((e) => e.event === 'long_open') ? true : undefined), { timeoutMs: 10_000 });
    await moreRounds(events, 5);
    const steps: string[] = ['iptables (legacy)'];
    const phases: Array<{ at: number; step: string }> = [{ at: 0, step: 'iptables (legacy)' }];
    const mark = (step: string): void => {
      steps.push(step);
      phases.push({ at: Date.now() / 1000, step });
    };
    const phaseOf = (t: number | undefined): string => [...phases].reverse().find((p) => (t ?? 0) >= p.at)?.step ?? '?';

    // 1. migrate on the running agent: iptables → nftables.
    mark('migrate --to nftables');
    const toNft = cli(['migrate', '--to', 'nftables', '--socket', socketPath]);
    expect(toNft.code, toNft.stderr).toBe(0);
    mark('nftables (migrated)');
    expect(learnedEventsInForce()).toBe(true); // the mirror reads them
    await moreRounds(events, 5);

    // 2. SIGTERM; rounds while no agent runs; restart with the config saying nftables.
    writeConfig('nftables');
    mark('SIGTERM');
    first.kill('SIGTERM');
    await first.wait();
    mark('no agent (after SIGTERM)');
    await moreRounds(events, 5);
    mark('restart on nftables');
    let agent = await startAgent('nftables');
    mark('nftables (restarted)');
    await moreRounds(events, 5);

    // 3. ebpf when this build has it, then SIGKILL and a restart whose config says iptables
    //    (nft backend): the restart migrates from the recorded dataplane.
    let last: Kind = 'nftables';
    if (registered.includes('ebpf')) {
      mark('migrate --to ebpf');
      const toEbpf = cli(['migrate', '--to', 'ebpf', '--socket', socketPath]);
      expect(toEbpf.code, toEbpf.stderr).toBe(0);
      mark('ebpf (migrated)');
      // On while the nftables mirror was still in force (make before break), off once it was
      // removed: ebpf reads none (Dataplane.keepLearnedEvents).
      expect(learnedEventsInForce()).toBe(false);
      last = 'ebpf';
      await moreRounds(events, 5);
    }
    writeConfig('iptables', 'nft');
    mark(`SIGKILL (on ${last})`);
    agent.kill('SIGKILL');
    await agent.wait();
    mark('no agent (after SIGKILL)');
    await moreRounds(events, 5);
    mark(`restart: ${last} → iptables (nft)`);
    agent = await startAgent('iptables');
    mark('iptables (nft, restarted)');
    const final = status();
    expect(final?.migrations).toEqual([expect.objectContaining({ from: last, to: 'iptables' })]);
    expect(final?.migrations[0]?.removeFailed).toBeUndefined();
    await moreRounds(events, 5);

    prober.child.kill('SIGTERM');
    await waitFor('the client to finish', () => (events().some((e) => e.event === 'done') ? true : undefined), { timeoutMs: 10_000 });
    const all = events();
    const allowedAttempts = all.filter((e) => e.event === 'allowed');
    const deniedAttempts = all.filter((e) => e.event === 'denied');
    const echoes = all.filter((e) => e.event === 'long');
    const withPhase = (list: ClientEvent[]): Array<ClientEvent & { phase: string }> => list.map((e) => ({ ...e, phase: phaseOf(e.t) }));
    const byPhase = (list: Array<{ phase: string }>): Record<string, number> =>
      list.reduce<Record<string, number>>((acc, e) => ({ ...acc, [e.phase]: (acc[e.phase] ?? 0) + 1 }), {});
    const failedAllowed = withPhase(allowedAttempts.filter((e) => e.ok !== true || (e.ms ?? 0) >= 900));
    const passedDenied = withPhase(deniedAttempts.filter((e) => e.ok === true));
    const brokenEcho = withPhase(echoes.filter((e) => e.ok !== true));
    const attemptsByPhase = byPhase(withPhase(allowedAttempts));
    if (process.env['DNSPLANE_MIGRATION_LOG'] !== undefined) {
      const agentLogs = [...live.processes.values()].filter((p) => p.argv.includes(DNSPLANE_BIN)).map((p) => p.stderr()).join('\n');
      writeFileSync(process.env['DNSPLANE_MIGRATION_LOG'], JSON.stringify({ phases, failedAllowed, agentLogs }, null, 1));
    }
    const summary = `steps: ${steps.join(' → ')}; ${allowedAttempts.length} allowed attempts, ${deniedAttempts.length} denied attempts, ${echoes.length} echoes`;
    expect.soft(failedAllowed.length, `${summary}\nfailed allowed: by step ${JSON.stringify(byPhase(failedAllowed))} of ${JSON.stringify(attemptsByPhase)}; first: ${JSON.stringify(failedAllowed.slice(0, 3))}\nagent warnings: ${agentWarnings()}`).toBe(0);
    expect.soft(passedDenied.length, `${summary}\npassed denied: by step ${JSON.stringify(byPhase(passedDenied))}; first: ${JSON.stringify(passedDenied.slice(0, 3))}`).toBe(0);
    expect(brokenEcho.length, `${summary}\nbroken long connection: ${JSON.stringify(brokenEcho.slice(0, 3))}`).toBe(0);
    expect(allowedAttempts.length).toBeGreaterThanOrEqual(30);
    expect(echoes.length).toBeGreaterThanOrEqual(30);
  }, 180_000);

  it('uninstall leaves nothing named dnsplane: nft ruleset, iptables/ip6tables (both backends), tc filters, bpffs', async () => {
    const live = lab!;
    const node = live.namespaces.node;
    for (const agent of live.processes.values()) if (agent.argv.includes(DNSPLANE_BIN) && !agent.exited) await agent.stop(5000);
    const inNode = (argv: readonly string[]): { code: number; stdout: string; stderr: string } => {
      const full = netnsArgv(node, argv);
      const result = spawnSync(full[0]!, full.slice(1), { encoding: 'utf8', cwd: REPO_ROOT, timeout: 60_000 });
      return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
    };
    const result = inNode(['node', DNSPLANE_BIN, 'uninstall', '-c', configPath, '--socket', socketPath]);
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);

    const ruleset = inNode(['nft', 'list', 'ruleset']);
    expect(ruleset.code).toBe(0);
    expect(ruleset.stdout).not.toMatch(/dnsplane/i);
    for (const tool of ['iptables-legacy-save', 'ip6tables-legacy-save', 'iptables-nft-save', 'ip6tables-nft-save']) {
      const saved = inNode([tool]);
      expect(saved.code, `${tool}: ${saved.stderr}`).toBe(0);
      expect(saved.stdout, tool).not.toMatch(/dnsplane/i);
      expect(saved.stdout, tool).not.toMatch(/-m bpf/);
    }
    const links = JSON.parse(inNode(['ip', '-j', 'link', 'show']).stdout) as Array<{ ifname: string }>;
    for (const { ifname } of links) {
      for (const direction of ['ingress', 'egress']) {
        const filters = inNode(['tc', 'filter', 'show', 'dev', ifname, direction]);
        expect(filters.stdout, `tc filter show dev ${ifname} ${direction}`).toBe('');
      }
      const qdiscs = inNode(['tc', 'qdisc', 'show', 'dev', ifname]);
      expect(qdiscs.stdout, `tc qdisc show dev ${ifname}`).not.toContain('clsact');
    }
    expect(existsSync(pinRoot)).toBe(false);
    expect(readdirSync('/sys/fs/bpf').filter((name) => pinRoot.endsWith(name))).toEqual([]);
    expect(existsSync(statePath)).toBe(false);
  }, 120_000);
});
