// Benchmark of enforcement as a workload sees it, in the network-namespace lab (test/lab).
// Needs root and the bootstrap (the agent runs from its compiled CLI).
//
//   npm run bench:enforce                    print the tables
//   npm run bench:enforce -- --json FILE     also write the figures as JSON
//   npm run bench:enforce -- --trials N      (a) trials per column (default 1000)
//   npm run bench:enforce -- --rounds R      (b) installed/not-installed rounds per dataplane (default 12)
//   npm run bench:enforce -- --queries Q     (b) covered names per block (default 100)
//   npm run bench:enforce -- --gap MS        (b) pause between queries (default 2)
//   npm run bench:enforce -- --no-reference  (b) leave out the conntrack-only reference measured after the rounds
//   npm run bench:enforce -- --no-switched   (b) leave out the installed footprint switched as a whole after the rounds
//   npm run bench:enforce -- --causes N      (b) instead of the rounds: what each part adds, switched in ~0.2 s segments, N queries each
//   npm run bench:enforce -- --causes N --mirror-drain-ms MS   the same with the nftables agent's mirror read every MS ms (nftables.mirrorDrainIntervalMs)
//   npm run bench:enforce -- --only LIST     dataplanes and/or `dnsmasq` (default: all)
//   npm run bench:enforce -- --skip-scale    leave out (c)
//   npm run bench:enforce -- --skip-connect  leave out (a)
//   npm run bench:enforce -- --skip-dns      leave out (b)
//
// (a) resolve → first successful connect: per trial the lab's Node client sends its own query,
//     and connects to the answered address (a fresh name and address every trial, so each
//     connect is the first packet the dataplane sees for that address); latency = DNS answer
//     time + connect time; lost first SYNs counted; and, as a check of the lab client itself,
//     answer received → SYN in the kernel (p50/p95, within 1 ms). Columns, each in a lab of its own: no
//     policy; dnsplane on every registered dataplane (iptables with the host's backend);
//     dnsmasq --nftset (Debian's dnsmasq as a forwarder on the node that fills an nft set
//     before it answers) and, as its baseline, the same forwarder without --nftset.
// (b) DNS answer time added (see enforce-dns.ts): per dataplane, one lab, rounds alternating
//     "installed" and "not installed"; the median of the per-round paired differences with a
//     95 % bootstrap interval; and the kernel's own accounting (bpf_stats) of the time
//     dnsplane's BPF programs run per DNS exchange. dnsmasq --nftset against the plain
//     forwarder, both running, query by query alternated.
//     The < 5 µs target is judged on the time the node adds to the DNS response, timed by
//     packet captures at both edges of the node (the whole exchange printed beside it);
//     without captures on the in-path time together with the end-to-end interval.
// (c) scale on nftables: 1,000 policies holding 10,000 domain patterns, 100,000 learned
//     addresses restored from the state file: time from start to applied, re-apply time after
//     an edit, agent RSS.
// Targets: zero lost first SYNs, added DNS latency < 5 µs, full apply < 2 s.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { DRIVERS } from '../packages/agent/src/drivers.js';
import type { Lab, LabProcess } from '../test/lab/lab.js';
import { waitFor } from '../test/lab/wait.js';
import { addedDnsLatency, dnsCauses, enableBpfStats, timeQueries, type AddedDnsFigures, type ProgramTime, type ToggleFigures } from './enforce-dns.js';
import { BenchAgent, endpointDoc, fmt, withLab } from './enforce-agent.js';
import { formatScale, scaleFigures, type ScaleFigures } from './enforce-scale.js';
import { bootstrapMedian, formatEstimate, median, quantile, type Estimate } from './paired.js';

const TARGET_ADDED_DNS_US = 5;
/** The lab client connects within this many µs of receiving the answer (issue #4's "within 1 ms"). */
const CLIENT_REACTION_US = 1000;

interface Options {
  readonly json: string | undefined;
  readonly trials: number;
  readonly rounds: number;
  readonly queries: number;
  readonly gapMs: number;
  readonly only: readonly string[] | undefined;
  readonly skipScale: boolean;
  readonly skipConnect: boolean;
  readonly skipDns: boolean;
  readonly reference: boolean;
  /** (b): measure the installed footprint switched as a whole after the rounds (`--no-switched`: not). */
  readonly switched: boolean;
  /** Queries per switched condition of the causes run (0: no causes run). */
  readonly causes: number;
  /** nftables.mirrorDrainIntervalMs of the causes run's nftables agent (undefined: the config default). */
  readonly mirrorDrainMs: number | undefined;
}

function parseOptions(argv: readonly string[]): Options {
  let json: string | undefined;
  let trials = 1000;
  let rounds = 12;
  let queries = 100;
  let gapMs = 2;
  let only: string[] | undefined;
  let skipScale = false;
  let skipConnect = false;
  let skipDns = false;
  let reference = true;
  let switched = true;
  let causes = 0;
  let mirrorDrainMs: number | undefined;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--json') json = argv[(i += 1)];
    else if (arg === '--trials') trials = Number(argv[(i += 1)]);
    else if (arg === '--rounds') rounds = Number(argv[(i += 1)]);
    else if (arg === '--queries') queries = Number(argv[(i += 1)]);
    else if (arg === '--gap') gapMs = Number(argv[(i += 1)]);
    else if (arg === '--only') only = (argv[(i += 1)] ?? '').split(',').filter((x) => x !== '');
    else if (arg === '--skip-scale') skipScale = true;
    else if (arg === '--skip-connect') skipConnect = true;
    else if (arg === '--skip-dns') skipDns = true;
    else if (arg === '--no-reference') reference = false;
    else if (arg === '--no-switched') switched = false;
    else if (arg === '--causes') causes = Number(argv[(i += 1)]);
    else if (arg === '--mirror-drain-ms') mirrorDrainMs = Number(argv[(i += 1)]);
    else throw new Error(`unknown option ${arg} (--json FILE, --trials N, --rounds R, --queries Q, --gap MS, --only LIST, --skip-scale, --skip-connect, --skip-dns, --no-reference, --no-switched, --causes N, --mirror-drain-ms MS)`);
  }
  if (!Number.isInteger(trials) || trials < 1 || trials > 3000) throw new Error('--trials must be 1..3000');
  if (!Number.isInteger(rounds) || rounds < 2 || rounds > 60) throw new Error('--rounds must be 2..60');
  if (!Number.isInteger(queries) || queries < 10 || queries > 500) throw new Error('--queries must be 10..500');
  if (!Number.isFinite(gapMs) || gapMs < 0 || gapMs > 100) throw new Error('--gap must be 0..100 ms');
  const known = [...DRIVERS.map((d) => d.kind), 'dnsmasq'];
  const unknown = (only ?? []).filter((x) => !known.includes(x));
  if (unknown.length > 0) throw new Error(`--only: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
  if (rounds * 3 * queries > 16_000) throw new Error('--rounds × --queries: at most 5,333 (16,000 fresh names per lab, 3 blocks of queries per round)');
  if (!Number.isInteger(causes) || causes < 0 || causes > 100_000) throw new Error('--causes must be 0..100000 queries');
  if (mirrorDrainMs !== undefined && (!Number.isInteger(mirrorDrainMs) || mirrorDrainMs < 10 || mirrorDrainMs > 60_000)) {
    throw new Error('--mirror-drain-ms must be 10..60000');
  }
  return { json, trials, rounds, queries, gapMs, only, skipScale, skipConnect, skipDns, reference, switched, causes, mirrorDrainMs };
}

interface ConnectColumn {
  readonly name: string;
  readonly trials: number;
  readonly connected: number;
  readonly lostFirstSyns: number;
  readonly synRetransmits: number;
  readonly resolveToConnectMs: { readonly p50: number; readonly p99: number };
  readonly dnsMs: { readonly p50: number; readonly p99: number };
  /** The lab client's own reaction: answer received → SYN in the kernel (µs). */
  readonly answerToSynUs: { readonly p50: number; readonly p95: number };
  readonly error?: string;
}

/** dnsmasq --nftset against the plain forwarder, both running, queries alternated one by one. */
interface NftsetAddedDns {
  readonly name: string;
  readonly rounds: number;
  readonly queriesPerRound: number;
  readonly plainUs: number;
  readonly nftsetUs: number;
  readonly addedUs: Estimate;
  readonly unanswered: number;
  readonly error?: string;
}

function benchPolicy(lab: Lab): Record<string, unknown> {
  const nets = [...lab.dnsServerNets];
  return {
    kind: 'Policy',
    metadata: { name: 'bench' },
    spec: {
      order: 100,
      selector: 'app == "bench"',
      types: ['Egress'],
      egress: [
        { action: 'Allow', protocol: 'UDP', destination: { nets, ports: [53] } },
        { action: 'Allow', protocol: 'TCP', destination: { nets, ports: [53] } },
        { action: 'Allow', protocol: 'TCP', destination: { domains: ['*.fresh.lab.test'], ports: [80] } },
      ],
    },
  };
}

async function measure(lab: Lab, name: string, trials: number, server?: { readonly address: string; readonly port?: number }): Promise<ConnectColumn> {
  const names = lab.allocateFresh(trials);
  const batch = await lab.connectAfterResolveBatch(
    'client1',
    names.map((n) => ({ name: n.name, port: 80 })),
    server === undefined ? {} : { server },
  );
  const ok = batch.trials.filter((t) => t.connected && t.dnsMs !== null && t.connectMs !== null);
  const dns = batch.trials.flatMap((t) => (t.dnsMs === null ? [] : [t.dnsMs]));
  const reaction = batch.trials.flatMap((t) => (t.answerToSynUs === null ? [] : [t.answerToSynUs]));
  return {
    name,
    trials,
    connected: batch.trials.filter((t) => t.connected).length,
    lostFirstSyns: batch.trials.filter((t) => t.synRetransmitted).length,
    synRetransmits: batch.counters.synRetransmits,
    resolveToConnectMs: {
      p50: quantile(ok.map((t) => t.dnsMs! + t.connectMs!), 0.5),
      p99: quantile(ok.map((t) => t.dnsMs! + t.connectMs!), 0.99),
    },
    dnsMs: { p50: quantile(dns, 0.5), p99: quantile(dns, 0.99) },
    answerToSynUs: { p50: quantile(reaction, 0.5), p95: quantile(reaction, 0.95) },
  };
}

const message = (error: unknown): string => (error instanceof Error ? error.message.split('\n')[0]! : String(error));

const failedColumn = (name: string, trials: number, error: unknown): ConnectColumn => ({
  name,
  trials,
  connected: 0,
  lostFirstSyns: 0,
  synRetransmits: 0,
  resolveToConnectMs: { p50: Number.NaN, p99: Number.NaN },
  dnsMs: { p50: Number.NaN, p99: Number.NaN },
  answerToSynUs: { p50: Number.NaN, p95: Number.NaN },
  error: message(error),
});

const noEstimate: Estimate = { median: Number.NaN, low: Number.NaN, high: Number.NaN, rounds: 0 };

async function dnsplaneColumn(dataplane: string, trials: number): Promise<ConnectColumn> {
  const name = `dnsplane/${dataplane}`;
  try {
    return await withLab(trials, async (lab) => {
      const agent = new BenchAgent(lab, dataplane);
      try {
        agent.writeConfig();
        agent.writeResource('bench.yaml', [endpointDoc(lab), benchPolicy(lab)]);
        await agent.start(45_000);
        return await measure(lab, name, trials);
      } finally {
        await agent.stop();
      }
    });
  } catch (error) {
    return failedColumn(name, trials, error);
  }
}

async function dnsplaneAddedDns(dataplane: string, options: Options): Promise<AddedDnsFigures> {
  const roundsNames = 20 + options.rounds * 3 * options.queries;
  // The switched footprint: 16,000 queries, half of them fresh covered names, within the lab's 16,000.
  const switchedCovered = options.switched ? Math.min(8_000, 16_000 - roundsNames) : 0;
  const switchedQueries = switchedCovered >= 1_000 ? 2 * switchedCovered : 0;
  const fresh = roundsNames + switchedQueries / 2;
  try {
    return await withLab(Math.ceil(fresh / 2), (lab) =>
      addedDnsLatency(
        lab,
        dataplane,
        benchPolicy(lab),
        { rounds: options.rounds, queries: options.queries, gapMs: options.gapMs, referenceQueries: options.reference ? 16_000 : 0, switchedQueries },
        (m) => process.stderr.write(`${m}\n`),
      ),
    );
  } catch (error) {
    return {
      name: `dnsplane/${dataplane}`,
      rounds: 0,
      queriesPerBlock: options.queries,
      notInstalledUs: Number.NaN,
      installedUs: Number.NaN,
      addedUs: noEstimate,
      roundDifferencesUs: [],
      addedUncoveredUs: noEstimate,
      learningShareUs: noEstimate,
      unanswered: 0,
      error: message(error),
    };
  }
}

/**
 * dnsmasq on the node as the clients' forwarder: a plain one and one with --nftset (it fills
 * an nft set the forward chain allows), both running. (a) each in turn; (b) alternated query
 * by query, in rounds.
 */
async function dnsmasqColumns(options: Options): Promise<{ columns: ConnectColumn[]; added: NftsetAddedDns | undefined }> {
  const trials = options.skipConnect ? 0 : options.trials;
  const perRound = options.queries;
  const dnsFresh = options.skipDns ? 0 : options.rounds * 2 * perRound;
  return withLab(Math.ceil((2 * trials + dnsFresh) / 2) + 10, async (lab) => {
    const client = lab.endpoints.client1!;
    const table = `dnsbench${randomBytes(3).toString('hex')}`;
    const ruleset = `table inet ${table} {
  set allowed4 { type ipv4_addr; flags timeout; }
  chain forward { type filter hook forward priority 0; policy accept;
    ct state established,related accept
    iifname "${client.hostInterface}" tcp dport 80 ip daddr @allowed4 accept
    iifname "${client.hostInterface}" drop
  }
}
`;
    const forwarders: LabProcess[] = [];
    const start = async (label: string, nftset: boolean, port: number): Promise<void> => {
      const argv = [
        'dnsmasq', '--keep-in-foreground', '--no-resolv', '--no-hosts', '--cache-size=0', '--user=root', '--pid-file',
        `--listen-address=${client.gateway.ipv4}`, '--bind-interfaces', `--port=${port}`,
        `--server=${lab.dnsServers.dnsmasq.ipv4}`,
        ...(nftset ? [`--nftset=/fresh.lab.test/4#inet#${table}#allowed4`] : []),
      ];
      const forwarder = lab.startAgentProcess(argv, { name: `dnsmasq-${nftset ? 'nftset' : 'plain'}` });
      forwarders.push(forwarder);
      await waitFor(
        `the ${label} forwarder to answer`,
        async () => {
          if (forwarder.exited) throw new Error(`dnsmasq exited: ${forwarder.stderr().trim()}`);
          const probe = await lab.exec('client1', ['dig', '+short', '+time=1', '+tries=1', '-p', String(port), `@${client.gateway.ipv4}`, lab.names.ready.name]);
          return probe.stdout.trim() === lab.names.ready.ipv4 ? true : undefined;
        },
        { timeoutMs: 15_000, stopOn: (error) => error instanceof Error && error.message.startsWith('dnsmasq exited') },
      );
    };
    const plainName = 'dnsmasq forwarder (no policy)';
    const nftsetName = 'dnsmasq --nftset';
    const columns: ConnectColumn[] = [];
    let added: NftsetAddedDns | undefined;
    let tableLoaded = false;
    try {
      await start(plainName, false, 5353);
      // (a) of the plain forwarder before the table exists: its forward chain admits only
      // what --nftset added.
      if (!options.skipConnect) {
        process.stderr.write(`  ${plainName}…\n`);
        columns.push(await measure(lab, plainName, trials, { address: client.gateway.ipv4, port: 5353 }).catch((e: unknown) => failedColumn(plainName, trials, e)));
      }
      const load = await lab.exec('node', ['nft', '-f', '-'], { input: ruleset });
      if (load.code !== 0) throw new Error(`nft -f failed: ${load.stderr}`);
      tableLoaded = true;
      await start(nftsetName, true, 5354);
      if (!options.skipConnect) {
        process.stderr.write(`  ${nftsetName}…\n`);
        columns.push(await measure(lab, nftsetName, trials, { address: client.gateway.ipv4, port: 5354 }).catch((e: unknown) => failedColumn(nftsetName, trials, e)));
      }
      if (!options.skipDns) {
        process.stderr.write('  dnsmasq --nftset vs plain, alternated query by query…\n');
        added = await nftsetAdded(lab, client.gateway.ipv4, options.rounds, perRound, options.gapMs).catch((e: unknown) => ({
          name: `${nftsetName} vs plain forwarder`, rounds: 0, queriesPerRound: perRound, plainUs: Number.NaN, nftsetUs: Number.NaN, addedUs: noEstimate, unanswered: 0, error: message(e),
        }));
      }
    } finally {
      await Promise.all(forwarders.map((f) => f.stop(3000)));
      if (tableLoaded) await lab.exec('node', ['nft', 'delete', 'table', 'inet', table]);
    }
    return { columns, added };
  });
}

async function nftsetAdded(lab: Lab, address: string, rounds: number, perRound: number, gapMs: number): Promise<NftsetAddedDns> {
  const servers = [{ address, port: 5353 }, { address, port: 5354 }];
  const diffs: number[] = [];
  const plain: number[] = [];
  const nftset: number[] = [];
  let unanswered = 0;
  for (let round = 0; round < rounds; round += 1) {
    const names = lab.allocateFresh(2 * perRound).map((f) => f.name);
    // Pairs, alternating which forwarder goes first; every query a fresh name (nftset adds it).
    const queries = Array.from({ length: perRound }, (_, i) => {
      const first = (i + round) % 2;
      return [{ name: names[2 * i]!, server: first }, { name: names[2 * i + 1]!, server: 1 - first }];
    }).flat();
    const us = await timeQueries(lab, servers, queries, gapMs);
    const times: [number[], number[]] = [[], []];
    us.forEach((value, i) => {
      if (value === null) unanswered += 1;
      else times[queries[i]!.server as 0 | 1].push(value);
    });
    plain.push(median(times[0]));
    nftset.push(median(times[1]));
    diffs.push(median(times[1]) - median(times[0]));
  }
  return {
    name: 'dnsmasq --nftset vs plain forwarder',
    rounds,
    queriesPerRound: perRound,
    plainUs: median(plain),
    nftsetUs: median(nftset),
    addedUs: bootstrapMedian(diffs),
    unanswered,
  };
}

function connectTable(columns: readonly ConnectColumn[], trials: number): string[] {
  return [
    `(a) resolve → first connect, ${trials} trials per column (fresh name and address each trial; each column in a lab of its own)`,
    `${'column'.padEnd(30)} ${'connected'.padStart(9)} ${'lost SYN'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'DNS p50'.padStart(8)} ${'DNS p99'.padStart(8)} ${'ans→SYN p50 µs'.padStart(15)} ${'p95 µs'.padStart(8)}`,
    ...columns.map(
      (c) =>
        `${c.name.padEnd(30)} ${String(c.connected).padStart(9)} ${String(c.lostFirstSyns).padStart(8)} ${fmt(c.resolveToConnectMs.p50).padStart(8)} ${fmt(c.resolveToConnectMs.p99).padStart(8)} ${fmt(c.dnsMs.p50).padStart(8)} ${fmt(c.dnsMs.p99).padStart(8)} ${fmt(c.answerToSynUs.p50, 0).padStart(15)} ${fmt(c.answerToSynUs.p95, 0).padStart(8)}${c.error ? `  ERROR: ${c.error}` : ''}`,
    ),
    `target: zero lost first SYNs — ${columns.filter((c) => c.name.startsWith('dnsplane/')).map((c) => `${c.name} ${c.lostFirstSyns === 0 && c.connected === c.trials ? 'met' : 'MISSED'}`).join(', ')}`,
    // The lab's client must race the dataplane: its SYN follows the answer within a millisecond.
    // This is a check of the test client, not of dnsplane (the lab test asserts only its median).
    `client check: the SYN in the kernel within ${CLIENT_REACTION_US} µs of the answer (p95) — ${columns.map((c) => `${c.name} ${c.answerToSynUs.p95 < CLIENT_REACTION_US ? 'met' : 'MISSED'}`).join(', ')}`,
  ];
}

/**
 * Judged where the packet captures timed the switched footprint (±0.1–0.3 µs): on the median
 * the node adds to the DNS response (its crossing from the DNS namespace's edge to the
 * client's) — the issue's "DNS response latency added". The whole exchange (query + response
 * crossing) is printed beside it with its own comparison to 5 µs, the stricter reading: on a
 * netfilter dataplane its floor here is connection tracking's cold hooks plus the parser's two
 * runs (bench/README.md, "Which figure the target is judged on"). Without captures: in-path BPF
 * time < 5 µs and an end-to-end interval not wholly above 5 µs, as before the captures.
 */
function dnsVerdict(f: AddedDnsFigures): string {
  if (f.error !== undefined || f.inPath === undefined) return 'not measured';
  const crossing = f.switched?.error === undefined ? f.switched?.crossing : undefined;
  if (crossing !== undefined) {
    const response = crossing.answer.addedUs.median;
    const exchange = crossing.both.addedUs.median;
    const verdict = response < TARGET_ADDED_DNS_US ? 'met' : 'MISSED';
    return `${verdict} (response ${fmt(response, 1)}); exchange ${fmt(exchange, 1)} ${exchange < TARGET_ADDED_DNS_US ? 'under' : 'over'} ${TARGET_ADDED_DNS_US} (stricter reading)`;
  }
  const inPathUs = f.inPath.nsPerAnswer / 1000;
  if (inPathUs >= TARGET_ADDED_DNS_US) return 'MISSED (answer path)';
  const endToEnd = f.switched !== undefined && f.switched.error === undefined ? f.switched.addedUs : f.addedUs;
  if (endToEnd.low > TARGET_ADDED_DNS_US) return 'MISSED (end to end)';
  return 'met';
}

/** The header and rows as lines, each column padded to its widest cell, two spaces apart. */
function alignedTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/** The switched footprint's node share, from the packet captures at both edges. */
function crossingTable(figures: readonly AddedDnsFigures[]): string[] {
  const measured = figures.filter((f) => f.switched?.crossing !== undefined);
  if (measured.length === 0) return [];
  const header = ['column', 'answer: off µs', 'answer added µs [95% CI]', 'query: off µs', 'query added µs [95% CI]', 'both added µs [95% CI]', 'conntrack-only: answer added', 'both added', 'paired', 'dropped'];
  const rows = measured.map((f) => {
    const c = f.switched!.crossing!;
    const r = f.reference?.crossing;
    return [
      f.name,
      fmt(c.answer.offUs, 1),
      formatEstimate(c.answer.addedUs, 2),
      fmt(c.query.offUs, 1),
      formatEstimate(c.query.addedUs, 2),
      formatEstimate(c.both.addedUs, 2),
      r === undefined ? '—' : formatEstimate(r.answer.addedUs, 2),
      r === undefined ? '—' : formatEstimate(r.both.addedUs, 2),
      String(c.paired),
      String(c.dropped),
    ];
  });
  return [
    '',
    '(b) the node\'s share of the switched figure — the same segments, timed by packet captures (tcpdump, ns stamps) on client1\'s eth0 and the DNS namespace\'s eth0:',
    ...alignedTable(header, rows),
    'answer: from leaving the DNS namespace to arriving in the client\'s — the DNS response\'s latency through the node (tc programs, netfilter, routing, both veths),',
    'nothing of either end\'s scheduling; query: the other way; both: their sum per exchange. Added: on-segment median minus the neighbouring off-segments\' (as switched).',
  ];
}

function dnsTable(figures: readonly AddedDnsFigures[], nftset: NftsetAddedDns | undefined, options: Options): string[] {
  const header = ['column', 'not inst. µs', 'installed µs', 'added µs [95% CI]', 'switched µs [95% CI]', 'conntrack-only µs', 'added over conntrack-only', 'switched over conntrack-only', 'uncovered added µs', 'learning share µs', 'BPF ns/exchange', 'BPF ns/query', 'BPF ns/answer', 'target < 5 µs'];
  const rows = figures.map((f) => [
    f.name,
    fmt(f.notInstalledUs, 0),
    fmt(f.installedUs, 0),
    formatEstimate(f.addedUs),
    f.switched === undefined ? '—' : f.switched.error !== undefined ? `ERROR: ${f.switched.error}` : formatEstimate(f.switched.addedUs),
    f.reference === undefined ? '—' : f.reference.error !== undefined ? `ERROR: ${f.reference.error}` : formatEstimate(f.reference.addedUs),
    f.reference === undefined ? '—' : formatEstimate(f.reference.installedOverUs),
    f.reference?.switchedOverUs === undefined ? '—' : formatEstimate(f.reference.switchedOverUs),
    formatEstimate(f.addedUncoveredUs),
    formatEstimate(f.learningShareUs),
    f.inPath === undefined ? '—' : fmt(f.inPath.nsPerExchange, 0),
    f.inPath === undefined ? '—' : fmt(f.inPath.nsPerQuery, 0),
    f.inPath === undefined ? '—' : fmt(f.inPath.nsPerAnswer, 0),
    `${dnsVerdict(f)}${f.error ? `  ERROR: ${f.error}` : ''}`,
  ]);
  if (nftset !== undefined) {
    rows.push([
      nftset.name,
      fmt(nftset.plainUs, 0),
      fmt(nftset.nftsetUs, 0),
      formatEstimate(nftset.addedUs),
      '',
      '',
      '',
      '',
      '',
      '',
      'userspace',
      '',
      '',
      `${nftset.addedUs.low > TARGET_ADDED_DNS_US ? 'MISSED' : 'met'}${nftset.error ? `  ERROR: ${nftset.error}` : ''}`,
    ]);
  }
  const lines = [
    `(b) DNS answer time added — per dataplane one lab, ${options.rounds} rounds alternating "not installed"/"installed" (ABBA), ${options.queries} covered names + ${options.queries} uncovered answers per block, ${options.gapMs} ms between queries`,
    ...alignedTable(header, rows),
    '',
    'added: median over rounds of (installed − not installed) block-median answer time of names the policy covers (each answer teaches an address), 95 % bootstrap interval;',
    'switched: after the rounds, the agent installed once more and everything it puts on the node switched off (process SIGSTOPped, tc filters deleted, nft',
    'chains and sets or iptables chains removed) and on (restored, continued; the segment starts once the agent is quiet) every ~0.25 s while',
    '16,000 queries run, half fresh covered names, half the uncovered one, bpf_stats off: on-segment median minus the neighbouring off-segments\' (20 ms after each',
    'switch left out) — installed against not installed without the seconds between the rounds\' blocks;',
    'conntrack-only: after the rounds, in the same lab and with nothing of dnsplane, a minimal stateful firewall in the node namespace (one forward-hook chain, only',
    '`ct state established,related accept`: connection tracking on, every DNS query a new flow — what any netfilter firewall admitting answers by state pays), switched',
    'on/off every ~0.2 s while 16,000 queries run: on-segment median minus the neighbouring off-segments\'; added over conntrack-only: added minus that (each sample',
    'bootstrapped on its own); switched over conntrack-only: the switched figure minus it (both switched the same way) — what dnsplane adds beyond a minimal stateful',
    'firewall, the figure that compares with dnsmasq --nftset\'s (whose two forwarders sit behind the same stateful table). For reading only: the target is judged',
    'against nothing installed.',
    'uncovered: the same for a name no domain set covers (parsed, nothing learned); learning share: (covered − uncovered) installed minus not installed.',
    'BPF ns: kernel bpf_stats run time of every program of the agent, per DNS exchange (query + answer, installed blocks), per query (the same queries again while the DNS',
    'namespace drops the answers), and per answer = exchange − query: the time dnsplane\'s programs add to a DNS response on its way to the client.',
    `Target < ${TARGET_ADDED_DNS_US} µs judged on the median the packet captures give the switched footprint's response (the node's share, below): the time the node`,
    'adds to the DNS response on its way to the client. Printed beside it, not hidden: the exchange — query and response together, what a lookup through the node',
    'waits more — against the same 5 µs, the stricter reading (bench/README.md, "Which figure the target is judged on"). Without captures: BPF ns/answer < 5,000',
    'and the end-to-end interval (switched where measured, else the rounds\') not wholly above 5 µs.',
  ];
  lines.push(...crossingTable(figures));
  for (const f of figures) {
    if (f.inPath === undefined) continue;
    const breakdown = (programs: readonly ProgramTime[], count: number): string =>
      programs.map((p) => `${p.name} [${p.type}] ${fmt(p.runs / count, 2)} runs × ${fmt(p.runTimeNs / Math.max(1, p.runs), 0)} ns`).join('; ');
    lines.push(`  ${f.name} per exchange (${f.inPath.exchanges}): ${breakdown(f.inPath.programs, f.inPath.exchanges)}`);
    lines.push(`  ${f.name} per query alone (${f.inPath.queries}): ${breakdown(f.inPath.queryPrograms, f.inPath.queries)}`);
    if (f.unanswered > 0) lines.push(`  ${f.name}: ${f.unanswered} queries unanswered (left out)`);
  }
  return lines;
}

function causesTable(causes: readonly ToggleFigures[], options: Options): string[] {
  return [
    `(b) causes — each condition switched on/off every ~0.2 s while ${options.causes} queries run (${options.gapMs} ms apart); per "on" segment: its median answer time minus the mean of the neighbouring "off" segments'`,
    ...causes.map(
      (c) =>
        `  ${c.name.padEnd(78)} ${formatEstimate(c.addedUs).padEnd(24)} µs  (${c.addedUs.rounds} segments, ~${fmt(c.medianQueriesPerSegment, 0)} answers each, off ${fmt(c.offUs, 0)} µs)${c.error ? `  ERROR: ${c.error}` : ''}` +
        (c.crossing === undefined ? '' : `\n  ${''.padEnd(78)} crossing the node: answer ${formatEstimate(c.crossing.answer.addedUs, 2)}, query ${formatEstimate(c.crossing.query.addedUs, 2)} µs (off ${fmt(c.crossing.answer.offUs, 1)} / ${fmt(c.crossing.query.offUs, 1)})`),
    ),
    'Not a verdict: these say where an installed dataplane\'s end-to-end figure goes. kernel.bpf_stats_enabled is left as it was here (the rounds turn it on, and its',
    'clock reads add to every program run). The agent conditions run with the agent installed: everything else of it stays in place while one part is switched.',
    'Crossing the node: the same segments timed by packet captures at client1\'s and the DNS namespace\'s edges (see the switched footprint\'s node share).',
  ];
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('bench:enforce needs root (network namespaces, nft, tc, bpf)');
  const wanted = (x: string): boolean => options.only === undefined || options.only.includes(x);
  const dataplanes = DRIVERS.map((d) => d.kind).filter(wanted);
  const columns: ConnectColumn[] = [];
  const dnsFigures: AddedDnsFigures[] = [];
  let nftset: NftsetAddedDns | undefined;
  if (!options.skipConnect) {
    process.stderr.write(`(a) ${options.trials} resolve→connect trials per column; dataplanes: ${dataplanes.join(', ')}\n`);
    if (options.only === undefined) columns.push(await withLab(options.trials, (lab) => measure(lab, 'no policy', options.trials)).catch((e: unknown) => failedColumn('no policy', options.trials, e)));
    for (const dataplane of dataplanes) {
      process.stderr.write(`  dnsplane/${dataplane}…\n`);
      columns.push(await dnsplaneColumn(dataplane, options.trials));
    }
  }
  const causes: ToggleFigures[] = [];
  if (options.causes > 0 && dataplanes.length > 0) {
    process.stderr.write(`(b) causes: ${options.causes} queries per switched condition\n`);
    for (const [i, dataplane] of dataplanes.entries()) {
      process.stderr.write(`  dnsplane/${dataplane}…\n`);
      await withLab(Math.min(options.causes, 8000) / 2 + 10, (lab) =>
        dnsCauses(lab, dataplane, benchPolicy(lab), {
          queries: options.causes,
          segmentMs: 200,
          gapMs: options.gapMs,
          netfilter: i === 0,
          ...(options.mirrorDrainMs === undefined || dataplane !== 'nftables' ? {} : { agentConfig: { nftables: { mirrorDrainIntervalMs: options.mirrorDrainMs } } }),
        }, (m) => process.stderr.write(`${m}\n`)),
      ).then(
        (figures) => causes.push(...figures),
        (error: unknown) => causes.push({ name: `dnsplane/${dataplane}`, queries: 0, differences: [], offUs: Number.NaN, addedUs: noEstimate, medianQueriesPerSegment: 0, error: message(error) }),
      );
    }
  }
  if (!options.skipDns && options.causes === 0 && dataplanes.length > 0) {
    process.stderr.write(`(b) added DNS latency: ${options.rounds} rounds per dataplane; kernel.bpf_stats_enabled=1 for the run\n`);
    const restore = enableBpfStats();
    try {
      for (const dataplane of dataplanes) {
        process.stderr.write(`  dnsplane/${dataplane}…\n`);
        dnsFigures.push(await dnsplaneAddedDns(dataplane, options));
      }
    } finally {
      restore();
    }
  }
  if (wanted('dnsmasq') && !(options.skipConnect && options.skipDns)) {
    process.stderr.write('(a, b) dnsmasq forwarders…\n');
    try {
      const result = await dnsmasqColumns(options);
      columns.push(...result.columns);
      nftset = result.added;
    } catch (error) {
      columns.push(failedColumn('dnsmasq --nftset', options.trials, error));
    }
  }
  let scale: ScaleFigures | { error: string } | undefined;
  if (!options.skipScale) {
    process.stderr.write('(c) scale: 1,000 policies, 10,000 patterns, 100,000 learned (nftables)…\n');
    scale = await scaleFigures().catch((e: unknown) => ({ error: e instanceof Error ? e.message : String(e) }));
  }

  const lines: string[] = [];
  if (columns.length > 0) lines.push(...connectTable(columns, options.trials), '');
  if (causes.length > 0) lines.push(...causesTable(causes, options), '');
  if (dnsFigures.length > 0 || nftset !== undefined) lines.push(...dnsTable(dnsFigures, nftset, options), '');
  if (scale !== undefined) lines.push(...formatScale(scale));
  process.stdout.write(`${lines.join('\n')}\n`);
  if (options.json !== undefined) {
    writeFileSync(options.json, `${JSON.stringify({ trials: options.trials, rounds: options.rounds, queries: options.queries, columns, addedDns: dnsFigures, nftsetAddedDns: nftset, causes, scale }, null, 2)}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
});
