// The live demo behind `dnsplane demo` (packages/agent/src/demo.ts starts this file with
// `node --import tsx`, because the agent's compiled build does not include the lab):
// builds a lab, starts the real agent with the embedded example (examples/dnsplane.yaml and
// examples/policies, adapted to the lab: its DNS server, its zone `lab.test` instead of
// `example.test`, its interfaces and addresses — the policies keep their meaning), shows
// allowed and denied connections, the learned members, the parser counters and a metrics
// scrape, then tears everything down (or, with --keep, leaves it running and prints how to explore and remove it).
//
//   node --import tsx test/lab/demo.ts [--dataplane nftables|iptables|ebpf] [--keep]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfMap, decodeExpiry, decodeMemberKey, ktimeNs } from '@dnsplane/bpf-parser';
import { parse as parseYaml } from 'yaml';
import { createLab, type Lab, type LabProcess } from './lab.js';
import { waitFor } from './wait.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');
const EXAMPLES = join(REPO_ROOT, 'examples');
const DNSPLANE = join(REPO_ROOT, 'packages', 'agent', 'bin', 'dnsplane.js');
const DATAPLANES = ['nftables', 'iptables', 'ebpf'] as const;
type Dataplane = (typeof DATAPLANES)[number];

interface DemoOptions {
  readonly dataplane: Dataplane | undefined;
  readonly keep: boolean;
}

function parseArguments(argv: readonly string[]): DemoOptions {
  let dataplane: Dataplane | undefined;
  let keep = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--keep') keep = true;
    else if (arg === '--dataplane' || arg.startsWith('--dataplane=')) {
      const value = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : argv[(i += 1)];
      if (!DATAPLANES.includes(value as Dataplane)) throw new Error(`--dataplane must be one of ${DATAPLANES.join(', ')} (got ${String(value)})`);
      dataplane = value as Dataplane;
    } else throw new Error(`unknown demo option ${arg} (options: --dataplane KIND, --keep)`);
  }
  return { dataplane, keep };
}

const say = (text = ''): void => {
  process.stdout.write(`${text}\n`);
};
const heading = (text: string): void => say(`\n== ${text}`);

/**
 * The example, adapted to the lab. The example's DNS server (198.18.0.10 / fd00:0:0:1::10)
 * becomes the lab's dnsmasq, `example.test` becomes the lab zone `lab.test`, and the two
 * endpoints (`web` on dpweb0, `batch` on dpbatch0) become client1 and client2.
 */
function adaptExample(lab: Lab, text: string): string {
  const web = lab.endpoints.client1!;
  const batch = lab.endpoints.client2!;
  const dns = lab.dnsServers.dnsmasq;
  return text
    .replaceAll('fd00:0:0:1::10', dns.ipv6)
    .replaceAll('198.18.0.10', dns.ipv4)
    .replaceAll('example.test', 'lab.test')
    .replaceAll('dpweb0', web.hostInterface)
    .replaceAll('dpbatch0', batch.hostInterface)
    .replaceAll('"198.18.1.2", "fd00:0:0:2::2"', `"${web.ipv4}", "${web.ipv6}"`)
    .replaceAll('"198.18.1.6", "fd00:0:0:3::2"', `"${batch.ipv4}", "${batch.ipv6}"`);
}

function writeConfig(lab: Lab, directory: string, dataplane: Dataplane | undefined, pinRoot: string): { configPath: string; dataplane: string } {
  const example = parseYaml(readFileSync(join(EXAMPLES, 'dnsplane.yaml'), 'utf8')) as Record<string, unknown> & { dns?: Record<string, unknown> };
  const dns = lab.dnsServers.dnsmasq;
  const config = {
    ...example,
    ...(dataplane === undefined ? {} : { dataplane }),
    dns: { ...example.dns, trustedServers: [`${dns.ipv4}:${dns.port}`, `[${dns.ipv6}]:${dns.port}`] },
    resources: ['./policies'],
    statePath: join(directory, 'state.json'),
    bpf: { pinRoot },
  };
  mkdirSync(join(directory, 'policies'), { recursive: true });
  for (const file of readdirSync(join(EXAMPLES, 'policies'))) {
    writeFileSync(join(directory, 'policies', file), adaptExample(lab, readFileSync(join(EXAMPLES, 'policies', file), 'utf8')));
  }
  const configPath = join(directory, 'dnsplane.yaml');
  writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
  return { configPath, dataplane: String(config.dataplane) };
}

function cli(argv: readonly string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync('node', [DNSPLANE, ...argv], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
    return { code: 0, stdout, stderr: '' };
  } catch (error) {
    const failure = error as { status?: number; stdout?: string; stderr?: string };
    return { code: failure.status ?? 1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

async function showConnection(lab: Lab, who: string, url: string, expected: 'allowed' | 'denied', why: string): Promise<boolean> {
  const result = await lab.curl(who, url, { timeoutMs: expected === 'denied' ? 1500 : 5000 });
  const outcome = result.httpStatus === 200 ? 'allowed' : 'denied';
  const mark = outcome === expected ? 'ok ' : 'UNEXPECTED';
  say(`  [${mark}] ${who.padEnd(7)} curl ${url.padEnd(34)} → ${outcome}${outcome === 'denied' ? ` (curl exit ${result.code})` : ` (${result.body.trim()})`}  — ${why}`);
  return outcome === expected;
}

async function showLearned(lab: Lab, dataplane: string, pinRoot: string): Promise<void> {
  if (dataplane === 'nftables') {
    const listing = await lab.exec('node', ['nft', 'list', 'ruleset']);
    const sets = listing.stdout.match(/^\s*set \S+ \{[\s\S]*?^\s*\}/gm) ?? [];
    say(sets.length === 0 ? '  (no nft sets)' : sets.map((set) => set.replace(/^/gm, '  ')).join('\n'));
  }
  if (dataplane === 'iptables') {
    const rules = await lab.exec('node', ['iptables-save']);
    // The domain rules match through per-set xt_bpf member programs reading the kernel maps.
    say(rules.stdout.split('\n').filter((line) => line.includes('DNSPLANE') && line.includes('xt_member')).slice(0, 8).map((l) => `  ${l}`).join('\n') || '  (no xt_bpf member rules)');
  }
  // The kernel's membership maps (what the inline path reads), decoded with bpf-parser's codecs.
  for (const [map, family] of [['dnsp_members4', 4], ['dnsp_members6', 6]] as const) {
    const path = join(pinRoot, map);
    let pinned: BpfMap;
    try {
      pinned = BpfMap.fromPinned(path);
    } catch (error) {
      say(`  ${map}: not pinned (${error instanceof Error ? error.message : String(error)})`);
      continue;
    }
    try {
      const now = ktimeNs();
      const entries = pinned.entries().map(([key, value]) => ({ ...decodeMemberKey(family, key), expiry: decodeExpiry(value) }));
      say(`  kernel map ${path}: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`);
      for (const entry of entries.slice(0, 12)) {
        const left = Number(entry.expiry - now) / 1e9;
        say(`    domain set ${entry.setId.toString(16).padStart(8, '0')}  ${entry.address.padEnd(16)} ${left > 0 ? `expires in ${left.toFixed(0)} s` : 'expired'}`);
      }
    } finally {
      pinned.close();
    }
  }
}

async function main(): Promise<number> {
  const options = parseArguments(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    say('dnsplane demo needs root (network namespaces, nft/iptables, tc, bpf).');
    return 1;
  }
  const directory = mkdtempSync(join(tmpdir(), 'dnsplane-demo-'));
  const pinRoot = `/sys/fs/bpf/dnsplane-demo${randomBytes(3).toString('hex')}`;
  let lab: Lab | undefined;
  let agent: LabProcess | undefined;
  let kept = false;
  let ok = true;
  let configPath: string | undefined;
  let socketPath: string | undefined;
  try {
    heading('building the lab (network namespaces, dnsmasq + unbound, web server)');
    lab = await createLab({ clients: 2, log: (message) => say(`  ${message}`) });
    const written = writeConfig(lab, directory, options.dataplane, pinRoot);
    configPath = written.configPath;
    const dataplane = written.dataplane;
    const socket = join(directory, 'agent.sock');
    socketPath = socket;
    say(`  lab ${lab.id}: client1 = endpoint "web" (${lab.endpoints.client1!.hostInterface}), client2 = endpoint "batch" (${lab.endpoints.client2!.hostInterface})`);
    say(`  config: ${configPath} (examples/dnsplane.yaml + examples/policies, adapted to the lab)`);

    heading(`starting the agent: dnsplane run (dataplane ${dataplane})`);
    agent = lab.startAgentProcess(['node', DNSPLANE, 'run', '-c', configPath, '--socket', socket], { name: 'dnsplane' });
    const running = agent;
    await waitFor(
      'the agent to apply the example',
      () => {
        if (running.exited) throw new Error(`the agent exited:\n${running.stderr().trim().split('\n').slice(-5).join('\n')}`);
        const status = cli(['status', '--socket', socket, '--json']);
        return status.code === 0 && (JSON.parse(status.stdout) as { lastApply?: unknown }).lastApply !== undefined ? true : undefined;
      },
      { timeoutMs: 45_000, stopOn: (error) => error instanceof Error && error.message.startsWith('the agent exited') },
    );
    say(`  agent pid ${running.pid}, status socket ${socket}`);

    heading('connections (curl through glibc; policies: examples/policies)');
    const checks = [
      await showConnection(lab, 'client1', 'http://api.lab.test:443/', 'allowed', 'web-egress allows api.lab.test on 443'),
      await showConnection(lab, 'client1', 'http://api.lab.test:80/', 'denied', 'port 80 is not in the rule'),
      await showConnection(lab, 'client1', 'http://www.lab.test:443/', 'denied', 'www.lab.test is not in web-egress'),
      await showConnection(lab, 'client2', 'http://www.lab.test/', 'allowed', 'batch-egress allows the lab networks'),
      await showConnection(lab, 'client2', 'http://blocked.lab.test/', 'denied', 'Deny blocked.lab.test comes before the broad Allow'),
    ];
    ok = checks.every(Boolean);

    heading('learned members');
    await showLearned(lab, dataplane, pinRoot);

    heading('dnsplane status (parser counters)');
    const status = cli(['status', '--socket', socket]);
    say(status.stdout.trim().replace(/^/gm, '  ') || `  ${status.stderr.trim()}`);

    const metricsUrl = `http://${String((parseYaml(readFileSync(configPath, 'utf8')) as { metrics?: { listen?: string } }).metrics?.listen)}/metrics`;
    heading(`Prometheus metrics (curl ${metricsUrl} in the node namespace; the policy and parser lines)`);
    const scrape = await lab.exec('node', ['curl', '-s', '-f', '-m', '5', metricsUrl]);
    const shown = scrape.stdout.split('\n').filter((line) => /^dnsplane_(info\{|policy_packets_total\{|parser_total\{counter="(parsed|learned|queries)"\} |learned_entries )/.test(line));
    say(scrape.code === 0 ? shown.map((line) => `  ${line}`).join('\n') : `  scrape failed (curl exit ${scrape.code})`);
    ok = ok && scrape.code === 0;

    if (options.keep) {
      lab.keep();
      kept = true;
      heading('kept running');
      say(`  ip netns exec ${lab.endpoints.client1!.namespace} curl -s http://api.lab.test:443/      # a workload ("web")`);
      say(`  ip netns exec ${lab.endpoints.client2!.namespace} getent ahosts blocked.lab.test        # another ("batch")`);
      say(`  nsenter --net=/run/netns/${lab.namespaces.node} bash     # the node, where the agent runs (nft/iptables/tc here)`);
      say(`  node ${DNSPLANE} status --socket ${socket}`);
      say(`  ip netns exec ${lab.namespaces.node} curl -s ${metricsUrl}      # Prometheus metrics`);
      say(`  edit ${join(directory, 'policies')}/*.yaml — the agent re-applies on save`);
      say('  tear down:');
      say(`    cd ${REPO_ROOT} && npx tsx test/lab/cli.ts down ${lab.id} && rm -rf ${pinRoot} ${directory}`);
    }
  } catch (error) {
    ok = false;
    say(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    if (!kept) {
      heading('tearing down');
      await agent?.stop(15_000);
      if (lab !== undefined && !lab.destroyed && configPath !== undefined) {
        // dnsplane's own removal path (nft table / iptables chains / tc filters / pins / state).
        const removal = await lab.exec('node', ['node', DNSPLANE, 'uninstall', '-c', configPath, '--socket', socketPath ?? '']);
        say(removal.code === 0 ? '  dnsplane uninstall: done' : `  dnsplane uninstall failed (exit ${removal.code}): ${removal.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      }
      rmSync(pinRoot, { recursive: true, force: true });
      const report = await lab?.destroy();
      rmSync(directory, { recursive: true, force: true });
      say(report === undefined || report.problems.length === 0 ? '  done: no namespace, process or pin left' : `  problems: ${report.problems.join('; ')}`);
    }
  }
  return ok ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  },
);
