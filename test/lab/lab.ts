// The network-namespace lab: a "node" namespace that routes between DNS, web, untrusted and
// workload (client) namespaces. The root namespace is never touched: everything — addresses,
// routes, sysctls, and later the agent's nft tables and tc programs — lives in lab namespaces.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  connectBatchOutputSchema,
  interpretBatch,
  type ConnectBatchResult,
  type ConnectOptions,
  type ConnectTrial,
  type ConnectTrialResult,
} from './connect.js';
import {
  execInNamespace,
  ipNetnsExec,
  startInNamespace,
  type ExecOptions,
  type ExecResult,
  type LabProcess,
  type NamespaceLauncher,
} from './process.js';
import {
  LabRecord,
  labDirectory,
  namespaceExists,
  pidsInNamespace,
  sweepStaleLabs,
  teardownSync,
  type TeardownReport,
} from './registry.js';
import {
  allNamespaces,
  planTopology,
  randomLabId,
  type DnsServerAddresses,
  type LinkPlan,
  type TopologyPlan,
} from './topology.js';
import { waitFor } from './wait.js';
import { buildZone, NAMES, renderDnsmasqConfig, renderUnboundConfig, renderZoneFile, type FreshName, type ZoneContents } from './zone.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');
const SCRIPTS = join(HERE, 'scripts');

export const WEB_PORTS = [80, 443, 8080] as const;
/** The node resolver's address (startNodeResolver): on the node's lo, outside every lab subnet. */
const NODE_RESOLVER_IPV4 = '198.18.254.53';

/** A lab namespace by role (`node`, `dns`, `web`, `untrusted`, `client1`, …) or by full name. */
export type LabNamespace = 'node' | 'dns' | 'web' | 'untrusted' | `client${number}` | (string & {});

export interface LabOptions {
  /** Workload namespaces (client1 … clientN); default 2. */
  readonly clients?: number;
  /** Size of the fresh-name pool (t0001.fresh.lab.test …); default 2000. */
  readonly freshNames?: number;
  /** Which server the clients' /etc/resolv.conf names; default dnsmasq. */
  readonly clientResolver?: 'dnsmasq' | 'unbound';
  /** Deadline for the whole bring-up; default 30 s. */
  readonly startTimeoutMs?: number;
  /** Remove labs of dead owners before building; default true. */
  readonly sweep?: boolean;
  /** Progress messages (default: silent). */
  readonly log?: (message: string) => void;
}

export interface Endpoint {
  readonly name: string;
  readonly namespace: string;
  /** The workload's veth end inside the node namespace (where a host-side policy attaches). */
  readonly hostInterface: string;
  readonly ipv4: string;
  readonly ipv6: string;
  readonly gateway: { readonly ipv4: string; readonly ipv6: string };
}

export interface ResolveOptions {
  /** Ask this server instead of the one in the namespace's resolv.conf. */
  readonly server?: string;
  readonly timeoutMs?: number;
}

export interface ResolveResult {
  /** getent's exit code: 0 found, 2 not found. */
  readonly code: number;
  /** Unique addresses in the order getent printed them. */
  readonly addresses: readonly string[];
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
  readonly stdout: string;
  readonly stderr: string;
}

export interface CurlOptions {
  readonly timeoutMs?: number;
  /** Extra curl arguments (e.g. ['-6']). */
  readonly args?: readonly string[];
}

export interface CurlResult {
  /** curl's exit code (0 success, 7 could not connect, 28 timeout, 6 could not resolve). */
  readonly code: number;
  readonly httpStatus: number | null;
  readonly body: string;
  readonly remoteIp: string | null;
  readonly stderr: string;
}

export interface ForgeRequest {
  readonly to: { readonly address: string; readonly port: number };
  /** The forged source address (e.g. a trusted DNS server's). */
  readonly fromAddress: string;
  readonly fromPort?: number;
  /** The UDP payload (a DNS message). */
  readonly payload: Uint8Array;
  /** Sending namespace; default the untrusted one. */
  readonly via?: LabNamespace;
}

export interface Lab {
  readonly id: string;
  readonly topology: TopologyPlan;
  readonly namespaces: {
    readonly node: string;
    readonly dns: string;
    readonly web: string;
    readonly untrusted: string;
  };
  /** Workloads by name: client1, client2, … */
  readonly endpoints: Readonly<Record<string, Endpoint>>;
  readonly dnsServers: { readonly dnsmasq: DnsServerAddresses; readonly unbound: DnsServerAddresses };
  /** Every DNS server address in the config's `dns.trustedServers` form (`198.18.53.2:53`, `[fd00:18:53::2]:53`). */
  readonly trustedServers: readonly string[];
  /** Every DNS server address as a host prefix for a policy's `nets` (`198.18.53.2/32`, `fd00:18:53::2/128`). */
  readonly dnsServerNets: readonly string[];
  /**
   * Where startNodeResolver() puts a resolver on the node (a node-local cache): an address of
   * the node namespace's lo once it runs, none before.
   */
  readonly nodeResolver: { readonly ipv4: string; readonly port: number };
  readonly web: { readonly namespace: string; readonly ports: readonly number[]; readonly prefixes: TopologyPlan['servicePrefixes'] };
  readonly untrusted: { readonly namespace: string; readonly hostInterface: string; readonly ipv4: string; readonly ipv6: string };
  readonly zone: ZoneContents;
  readonly names: typeof NAMES;
  /** Folder with the lab's generated configs and server logs. */
  readonly directory: string;
  readonly destroyed: boolean;

  /** Full namespace name for a role or name. */
  namespace(ns: LabNamespace): string;
  exec(ns: LabNamespace, argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** glibc's resolver (`getent ahosts`), as a workload sees it. */
  resolve(ns: LabNamespace, name: string, options?: ResolveOptions): Promise<ResolveResult>;
  curl(ns: LabNamespace, url: string, options?: CurlOptions): Promise<CurlResult>;
  /** One resolve-then-connect trial (see connectAfterResolveBatch). */
  connectAfterResolve(ns: LabNamespace, name: string, port: number, options?: ConnectOptions & { readonly type?: 'A' | 'AAAA' }): Promise<ConnectTrialResult>;
  /** Many trials in one client process inside `ns`. */
  connectAfterResolveBatch(ns: LabNamespace, trials: readonly ConnectTrial[], options?: ConnectOptions): Promise<ConnectBatchResult>;
  /** Hands out fresh names no earlier call of this lab handed out; throws when the pool is empty. */
  allocateFresh(count: number): FreshName[];
  /**
   * Deletes a workload's veth pair and creates it again with the same names and addresses
   * (a new ifindex on the node's side): what a pod restart does to its interface.
   */
  replug(ns: LabNamespace, options?: { readonly timeoutMs?: number }): Promise<void>;
  /** Sends one UDP datagram with a forged source, from the untrusted namespace by default. */
  forgeResponse(request: ForgeRequest): Promise<void>;
  /** Kernel network counters of a namespace (/proc/net/snmp, netstat, snmp6), e.g. `Tcp.PassiveOpens`, `Ip6.FragCreates`. */
  netCounters(ns: LabNamespace): Promise<Record<string, number>>;
  /**
   * Starts a caching resolver on the node (what NodeLocal DNSCache or a dnsmasq on the host is):
   * `nodeResolver.ipv4` goes onto the node namespace's lo, and dnsmasq there forwards to the
   * lab's dnsmasq, keeping each answer at least `minCacheTtl` seconds (default 60). Its answers
   * reach the workloads through tc egress of their interfaces. Stopped by destroy().
   */
  startNodeResolver(options?: { readonly minCacheTtl?: number; readonly timeoutMs?: number }): Promise<void>;
  /**
   * A UDP echo server in the web namespace on each (address, port): a datagram goes back whole,
   * from the address it was sent to. Resolves once every socket is bound; stopped by destroy().
   */
  startUdpEcho(bindings: ReadonlyArray<{ readonly address: string; readonly port: number }>, options?: { readonly timeoutMs?: number }): Promise<LabProcess>;
  /** One UDP datagram of `size` bytes from `ns` to address:port: the size of the reply within `timeoutMs`, or undefined. */
  udpExchange(ns: LabNamespace, address: string, port: number, size: number, timeoutMs: number): Promise<number | undefined>;
  /** Starts a long-running command inside the node namespace (the agent); stopped by destroy(). */
  startAgentProcess(argv: readonly string[], options?: { readonly env?: Readonly<Record<string, string>>; readonly name?: string }): LabProcess;
  /** A long-running tool in one of the lab's namespaces (a packet capture), stopped at teardown like the servers; `name` unique in the lab. */
  startTool(ns: LabNamespace, name: string, argv: readonly string[]): LabProcess;
  /** The lab's servers (dnsmasq, unbound, web) and agent processes. */
  readonly processes: ReadonlyMap<string, LabProcess>;
  /** Leaves the lab running after this process exits (for exploration); `cli.ts down` removes it. */
  keep(): void;
  /** Stops every process the lab started, deletes its namespaces and /etc/netns folders. Idempotent. */
  destroy(): Promise<TeardownReport>;
}

// ---------------------------------------------------------------------------------------------
// Teardown on every exit path: normal destroy(), signals, process exit.

const liveLabs = new Set<LabImpl>();
let handlersInstalled = false;
const TERMINATING_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function onExit(): void {
  for (const lab of liveLabs) lab.teardownNow();
}

function onSignal(signal: NodeJS.Signals): void {
  onExit();
  uninstallHandlers();
  // Let whoever else listens (or the default action) handle the signal as if we were not here.
  process.kill(process.pid, signal);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  for (const signal of TERMINATING_SIGNALS) process.on(signal, onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', onExit);
  for (const signal of TERMINATING_SIGNALS) process.off(signal, onSignal);
}

// ---------------------------------------------------------------------------------------------

/** The node's side of a link: the veth pair (its peer moved into the link's namespace), the gateway addresses, up. */
function nodeSideCommands(link: LinkPlan): string[] {
  return [
    `link add ${link.hostInterface} type veth peer name ${link.peerInterface} netns ${link.namespace}`,
    `addr add ${link.gateway.ipv4}/24 dev ${link.hostInterface}`,
    `addr add ${link.gateway.ipv6}/64 dev ${link.hostInterface} nodad`,
    `link set ${link.hostInterface} up`,
  ];
}

/** The link's own namespace's side: its addresses on eth0, up, default routes via the node. */
function peerSideCommands(link: LinkPlan): string[] {
  return [
    ...link.addresses.ipv4.map((address) => `addr add ${address}/24 dev eth0`),
    ...link.addresses.ipv6.map((address) => `addr add ${address}/64 dev eth0 nodad`),
    'link set eth0 up',
    `route add default via ${link.gateway.ipv4}`,
    `route add default via ${link.gateway.ipv6}`,
  ];
}

async function ipBatch(namespace: string | undefined, commands: readonly string[], timeoutMs: number): Promise<void> {
  const argv = namespace === undefined ? ['ip', '-batch', '-'] : ['ip', '-netns', namespace, '-batch', '-'];
  const result = spawnSync(argv[0]!, argv.slice(1), { input: `${commands.join('\n')}\n`, encoding: 'utf8', timeout: timeoutMs });
  if (result.status !== 0) {
    throw new Error(`${argv.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr.trim()}\ncommands:\n${commands.join('\n')}`);
  }
}

function sysctlScript(settings: Readonly<Record<string, string>>): string {
  return Object.entries(settings)
    .map(([key, value]) => `echo ${value} > /proc/sys/${key.replaceAll('.', '/')}`)
    .join(' && ');
}

function uniqueInOrder(values: Iterable<string>): string[] {
  return [...new Set(values)];
}

class LabImpl implements Lab {
  readonly id: string;
  readonly topology: TopologyPlan;
  readonly namespaces: Lab['namespaces'];
  readonly endpoints: Record<string, Endpoint>;
  readonly dnsServers: Lab['dnsServers'];
  readonly trustedServers: readonly string[];
  readonly dnsServerNets: readonly string[];
  readonly nodeResolver = { ipv4: NODE_RESOLVER_IPV4, port: 53 } as const;
  readonly web: Lab['web'];
  readonly untrusted: Lab['untrusted'];
  readonly zone: ZoneContents;
  readonly names = NAMES;
  readonly directory: string;
  readonly processes = new Map<string, LabProcess>();
  private readonly record: LabRecord;
  private readonly log: (message: string) => void;
  private nextFresh = 0;
  private agentCount = 0;
  private destroying: Promise<TeardownReport> | undefined;
  private torndown: TeardownReport | undefined;

  constructor(plan: TopologyPlan, zone: ZoneContents, log: (message: string) => void) {
    this.id = plan.id;
    this.topology = plan;
    this.zone = zone;
    this.log = log;
    this.namespaces = plan.namespaces;
    this.endpoints = Object.fromEntries(
      plan.clients.map((client) => [
        client.name,
        {
          name: client.name,
          namespace: client.namespace,
          hostInterface: client.hostInterface,
          ipv4: client.addresses.ipv4[0]!,
          ipv6: client.addresses.ipv6[0]!,
          gateway: client.gateway,
        },
      ]),
    );
    this.dnsServers = plan.dnsServers;
    this.trustedServers = [plan.dnsServers.dnsmasq, plan.dnsServers.unbound].flatMap((server) => [
      `${server.ipv4}:${server.port}`,
      `[${server.ipv6}]:${server.port}`,
    ]);
    this.dnsServerNets = [plan.dnsServers.dnsmasq, plan.dnsServers.unbound].flatMap((server) => [`${server.ipv4}/32`, `${server.ipv6}/128`]);
    this.web = { namespace: plan.namespaces.web, ports: WEB_PORTS, prefixes: plan.servicePrefixes };
    this.untrusted = {
      namespace: plan.namespaces.untrusted,
      hostInterface: plan.untrustedLink.hostInterface,
      ipv4: plan.untrustedLink.addresses.ipv4[0]!,
      ipv6: plan.untrustedLink.addresses.ipv6[0]!,
    };
    this.directory = labDirectory(plan.id);
    // The state file exists before the first namespace does, so nothing is ever untracked.
    this.record = new LabRecord(
      plan.id,
      allNamespaces(plan),
      plan.clients.map((client) => `/etc/netns/${client.namespace}`),
    );
  }

  get destroyed(): boolean {
    return this.torndown !== undefined;
  }

  namespace(ns: LabNamespace): string {
    if (ns === 'node' || ns === 'dns' || ns === 'web' || ns === 'untrusted') return this.namespaces[ns as 'node' | 'dns' | 'web' | 'untrusted'];
    const endpoint = this.endpoints[ns];
    if (endpoint !== undefined) return endpoint.namespace;
    if (allNamespaces(this.topology).includes(ns)) return ns;
    throw new Error(`${ns} is not a namespace of lab ${this.id} (roles: node, dns, web, untrusted, ${Object.keys(this.endpoints).join(', ')})`);
  }

  /**
   * `ip netns exec` mounts a fresh /sys for the namespace, which hides the machine's bpffs at
   * /sys/fs/bpf. Commands in the node namespace (the agent, bpftool) need the real pins, so
   * there the lab enters the network namespace itself, mounts the namespace's sysfs in a
   * private mount namespace and moves the machine's bpffs back on top of it.
   */
  launcher(ns: LabNamespace): NamespaceLauncher {
    const namespace = this.namespace(ns);
    if (namespace !== this.namespaces.node) return ipNetnsExec(namespace);
    const script = [
      'if mountpoint -q /sys/fs/bpf; then',
      `  keep=$(mktemp -d ${this.directory}/bpffs.XXXXXX) && mount --bind /sys/fs/bpf "$keep" || exit 125`,
      'fi',
      'mount -t sysfs sysfs /sys || exit 125',
      'if [ -n "${keep:-}" ]; then mount --move "$keep" /sys/fs/bpf && rmdir "$keep" || exit 125; fi',
      'exec "$@"',
    ].join('\n');
    return {
      namespace,
      prefix: ['nsenter', `--net=/run/netns/${namespace}`, '--', 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh'],
    };
  }

  private assertLive(): void {
    if (this.destroying !== undefined) throw new Error(`lab ${this.id} has been destroyed`);
  }

  async exec(ns: LabNamespace, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.assertLive();
    return execInNamespace(this.launcher(ns), argv, { cwd: REPO_ROOT, ...options }, this.record.processGroupListener);
  }

  private async execChecked(ns: LabNamespace, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const result = await this.exec(ns, argv, options);
    if (result.code !== 0) {
      throw new Error(`${argv.join(' ')} in ${this.namespace(ns)} failed (${result.timedOut ? 'timed out' : `code ${result.code}`}): ${result.stderr.trim()}`);
    }
    return result;
  }

  // -- bring-up ------------------------------------------------------------------------------

  async build(options: { readonly clientResolver: 'dnsmasq' | 'unbound'; readonly timeoutMs: number }): Promise<void> {
    const plan = this.topology;
    const deadline = Date.now() + options.timeoutMs;
    const left = (): number => Math.max(1, deadline - Date.now());
    const namespaces = allNamespaces(plan);
    this.log(`lab ${this.id}: creating namespaces ${namespaces.join(', ')}`);
    await ipBatch(undefined, namespaces.map((ns) => `netns add ${ns}`), left());

    // Sysctls first, so interfaces created afterwards inherit the `default` values.
    const common = { 'net.ipv6.conf.all.accept_dad': '0', 'net.ipv6.conf.default.accept_dad': '0' };
    const routing = {
      ...common,
      'net.ipv4.ip_forward': '1',
      'net.ipv6.conf.all.forwarding': '1',
      // Forged packets from the untrusted namespace must reach the clients (no reverse-path drop).
      'net.ipv4.conf.all.rp_filter': '0',
      'net.ipv4.conf.default.rp_filter': '0',
    };
    await Promise.all(
      namespaces.map((ns) =>
        this.execChecked(ns, ['sh', '-c', sysctlScript(ns === plan.namespaces.node ? routing : common)], { timeoutMs: left() }),
      ),
    );

    const links: LinkPlan[] = [...plan.clients, plan.dnsLink, plan.webLink, plan.untrustedLink];
    const nodeCommands = ['link set lo up', ...links.flatMap(nodeSideCommands)];
    nodeCommands.push(
      `route add ${plan.servicePrefixes.ipv4} via ${plan.webLink.addresses.ipv4[0]}`,
      `route add ${plan.servicePrefixes.ipv6} via ${plan.webLink.addresses.ipv6[0]}`,
    );
    await ipBatch(plan.namespaces.node, nodeCommands, left());

    await Promise.all(
      links.map((link) => {
        const commands = ['link set lo up', ...peerSideCommands(link)];
        if (link === plan.webLink) {
          // "AnyIP": every address of the service prefixes is local to the web namespace.
          commands.push(`route add local ${plan.servicePrefixes.ipv4} dev lo`, `route add local ${plan.servicePrefixes.ipv6} dev lo`);
        }
        return ipBatch(link.namespace, commands, left());
      }),
    );

    // Workloads resolve through the lab DNS: `ip netns exec` bind-mounts these over /etc.
    for (const client of plan.clients) {
      const dir = `/etc/netns/${client.namespace}`;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'resolv.conf'), this.resolvConf(plan.dnsServers[options.clientResolver].ipv4));
    }

    this.startServers();
    await this.waitUntilReady(left);
    this.log(`lab ${this.id}: ready`);
  }

  async replug(ns: LabNamespace, options: { readonly timeoutMs?: number } = {}): Promise<void> {
    const client = this.topology.clients.find((c) => c.name === ns || c.namespace === ns);
    if (client === undefined) throw new Error(`replug: ${ns} is not a workload of lab ${this.id}`);
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    const left = (): number => Math.max(1, deadline - Date.now());
    // Deleting one end of the pair deletes both: the workload's eth0 goes with its addresses and routes.
    await ipBatch(this.topology.namespaces.node, [`link del ${client.hostInterface}`, ...nodeSideCommands(client)], left());
    await ipBatch(client.namespace, peerSideCommands(client), left());
    this.log(`lab ${this.id}: ${client.name}'s link re-created`);
  }

  private resolvConf(server: string): string {
    // No `options edns0`: glibc then asks for answers of at most 512 bytes over UDP and
    // retries over TCP when the server sets TC.
    return `# dnsplane lab ${this.id}\nnameserver ${server}\noptions timeout:2 attempts:2\n`;
  }

  private startServers(): void {
    const plan = this.topology;
    const dnsmasqConfig = join(this.directory, 'dnsmasq.conf');
    writeFileSync(dnsmasqConfig, renderDnsmasqConfig(this.zone, plan.dnsServers.dnsmasq));
    const unboundConfig = join(this.directory, 'unbound.conf');
    const zoneFile = join(this.directory, 'lab.test.zone');
    writeFileSync(zoneFile, renderZoneFile(this.zone, plan.dnsServers.unbound.ipv4));
    writeFileSync(unboundConfig, renderUnboundConfig(plan.dnsServers.unbound, this.directory, zoneFile));
    this.startProcess('dnsmasq', plan.namespaces.dns, ['dnsmasq', '--keep-in-foreground', `--conf-file=${dnsmasqConfig}`, '--pid-file', '--user=root']);
    this.startProcess('unbound', plan.namespaces.dns, ['unbound', '-d', '-c', unboundConfig]);
    this.startProcess('web', plan.namespaces.web, ['node', '--import', 'tsx', join(SCRIPTS, 'web-server.ts'), ...WEB_PORTS.map(String)]);
  }

  private startProcess(name: string, namespace: string, argv: readonly string[], env?: Readonly<Record<string, string>>): LabProcess {
    const handle = startInNamespace(this.launcher(namespace), argv, this.record.processGroupListener, {
      logPrefix: join(this.directory, name),
      cwd: REPO_ROOT,
      ...(env === undefined ? {} : { env }),
    });
    this.processes.set(name, handle);
    return handle;
  }

  private async waitUntilReady(left: () => number): Promise<void> {
    const plan = this.topology;
    const probeFrom = plan.clients[0]!.name;
    const digReady = (server: string): Promise<string> =>
      waitFor(
        `DNS server ${server} to answer ${NAMES.ready.name} (through the node namespace)`,
        async () => {
          for (const name of ['dnsmasq', 'unbound']) {
            const handle = this.processes.get(name)!;
            if (handle.exited) throw new Error(`${name} exited: ${handle.stderr().slice(-2000)}`);
          }
          const result = await this.exec(probeFrom, ['dig', '+short', '+time=1', '+tries=1', `@${server}`, NAMES.ready.name, 'A'], { timeoutMs: 3000 });
          return result.stdout.trim() === NAMES.ready.ipv4 ? server : undefined;
        },
        { timeoutMs: left() },
      );
    const web = this.processes.get('web')!;
    await Promise.all([
      ...[plan.dnsServers.dnsmasq, plan.dnsServers.unbound].flatMap((server) => [digReady(server.ipv4), digReady(server.ipv6)]),
      web.waitForOutput(/"event":"listening"/, left()),
    ]);
    // The web server answers through the node's routes, on both families.
    for (const url of [`http://${NAMES.ready.ipv4}/`, `http://[${NAMES.www.ipv6}]:8080/`]) {
      await waitFor(
        `web server to answer ${url} from ${probeFrom}`,
        async () => ((await this.curl(probeFrom, url, { timeoutMs: 2000 })).httpStatus === 200 ? true : undefined),
        { timeoutMs: left() },
      );
    }
  }

  // -- helpers ---------------------------------------------------------------------------------

  async resolve(ns: LabNamespace, name: string, options: ResolveOptions = {}): Promise<ResolveResult> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    let argv: string[] = ['getent', 'ahosts', name];
    if (options.server !== undefined) {
      // A private mount namespace with a resolv.conf naming the requested server.
      const file = join(this.directory, `resolv.${options.server.replaceAll(':', '_')}.conf`);
      writeFileSync(file, this.resolvConf(options.server));
      argv = ['unshare', '--mount', '--', 'sh', '-c', 'mount --bind "$1" /etc/resolv.conf && exec getent ahosts "$2"', 'sh', file, name];
    }
    const result = await this.exec(ns, argv, { timeoutMs });
    if (result.timedOut) throw new Error(`getent ahosts ${name} in ${this.namespace(ns)} timed out after ${timeoutMs} ms`);
    const addresses = uniqueInOrder(
      result.stdout
        .split('\n')
        .map((line) => line.split(/\s+/)[0] ?? '')
        .filter((address) => address !== ''),
    );
    return {
      code: result.code,
      addresses,
      ipv4: addresses.filter((address) => !address.includes(':')),
      ipv6: addresses.filter((address) => address.includes(':')),
      stdout: result.stdout,
      stderr: result.stderr,
    };
  }

  async curl(ns: LabNamespace, url: string, options: CurlOptions = {}): Promise<CurlResult> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const marker = '\n--dnsplane-lab--';
    const result = await this.exec(
      ns,
      ['curl', '-sS', '--max-time', String(timeoutMs / 1000), '-w', `${marker}%{http_code} %{remote_ip}`, ...(options.args ?? []), url],
      { timeoutMs: timeoutMs + 2000 },
    );
    const at = result.stdout.lastIndexOf(marker);
    const body = at >= 0 ? result.stdout.slice(0, at) : result.stdout;
    const [status, remoteIp] = (at >= 0 ? result.stdout.slice(at + marker.length) : '').split(' ');
    const httpStatus = Number.parseInt(status ?? '', 10);
    return {
      code: result.code,
      httpStatus: Number.isInteger(httpStatus) && httpStatus > 0 ? httpStatus : null,
      body,
      remoteIp: remoteIp !== undefined && remoteIp !== '' ? remoteIp : null,
      stderr: result.stderr,
    };
  }

  async connectAfterResolveBatch(ns: LabNamespace, trials: readonly ConnectTrial[], options: ConnectOptions = {}): Promise<ConnectBatchResult> {
    const dnsTimeoutMs = options.dnsTimeoutMs ?? 2000;
    const connectTimeoutMs = options.connectTimeoutMs ?? 2500;
    const concurrency = options.concurrency ?? 1;
    const input = {
      server: { address: options.server?.address ?? this.dnsServers.dnsmasq.ipv4, port: options.server?.port ?? 53 },
      trials: trials.map((trial) => ({ name: trial.name, type: trial.type ?? 'A', port: trial.port })),
      dnsTimeoutMs,
      connectTimeoutMs,
      concurrency,
    };
    const timeoutMs = options.timeoutMs ?? 10_000 + Math.ceil(trials.length / concurrency) * (dnsTimeoutMs + connectTimeoutMs);
    const result = await this.exec(ns, ['node', '--import', 'tsx', join(SCRIPTS, 'connect-trials.ts')], {
      input: JSON.stringify(input),
      timeoutMs,
    });
    if (result.code !== 0) {
      throw new Error(`connect trials in ${this.namespace(ns)} failed (${result.timedOut ? `timed out after ${timeoutMs} ms` : `code ${result.code}`}): ${result.stderr.trim().slice(-2000)}`);
    }
    return interpretBatch(connectBatchOutputSchema.parse(JSON.parse(result.stdout)));
  }

  async connectAfterResolve(
    ns: LabNamespace,
    name: string,
    port: number,
    options: ConnectOptions & { readonly type?: 'A' | 'AAAA' } = {},
  ): Promise<ConnectTrialResult> {
    const batch = await this.connectAfterResolveBatch(ns, [{ name, port, type: options.type ?? 'A' }], options);
    return batch.trials[0]!;
  }

  allocateFresh(count: number): FreshName[] {
    if (!Number.isInteger(count) || count < 0) throw new Error(`count ${count} must be a non-negative integer`);
    if (this.nextFresh + count > this.zone.fresh.length) {
      throw new Error(`fresh-name pool exhausted: asked for ${count}, ${this.zone.fresh.length - this.nextFresh} left (createLab({ freshNames }) makes it larger)`);
    }
    const names = this.zone.fresh.slice(this.nextFresh, this.nextFresh + count);
    this.nextFresh += count;
    return names;
  }

  async forgeResponse(request: ForgeRequest): Promise<void> {
    const input = JSON.stringify({
      to: request.to,
      from: { address: request.fromAddress, port: request.fromPort ?? 53 },
      payload: Buffer.from(request.payload).toString('base64'),
    });
    await this.execChecked(request.via ?? 'untrusted', ['python3', join(SCRIPTS, 'forge-udp.py')], { input, timeoutMs: 5000 });
  }

  async netCounters(ns: LabNamespace): Promise<Record<string, number>> {
    const result = await this.execChecked(ns, ['cat', '/proc/net/snmp', '/proc/net/netstat'], { timeoutMs: 5000 });
    const counters: Record<string, number> = {};
    const lines = result.stdout.trim().split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const keys = lines[i]!.split(/\s+/);
      const values = lines[i + 1]!.split(/\s+/);
      const prefix = (keys[0] ?? '').replace(/:$/, '');
      for (let j = 1; j < keys.length; j += 1) counters[`${prefix}.${keys[j]}`] = Number(values[j]);
    }
    // IPv6: one "Name value" per line (Ip6FragCreates → Ip6.FragCreates)
    const snmp6 = await this.execChecked(ns, ['cat', '/proc/net/snmp6'], { timeoutMs: 5000 });
    for (const line of snmp6.stdout.trim().split('\n')) {
      const [name, value] = line.split(/\s+/);
      const known = /^(Ip6|Icmp6|Udp6|UdpLite6)(\w+)$/.exec(name ?? '');
      if (known !== null) counters[`${known[1]}.${known[2]}`] = Number(value);
    }
    return counters;
  }

  async startNodeResolver(options: { readonly minCacheTtl?: number; readonly timeoutMs?: number } = {}): Promise<void> {
    this.assertLive();
    if (this.processes.has('node-resolver')) throw new Error(`lab ${this.id} already runs a node resolver`);
    const deadline = Date.now() + (options.timeoutMs ?? 15_000);
    const config = join(this.directory, 'node-resolver.conf');
    writeFileSync(
      config,
      [
        'no-resolv',
        'no-hosts',
        'no-poll',
        'bind-interfaces',
        `listen-address=${this.nodeResolver.ipv4}`,
        `port=${this.nodeResolver.port}`,
        `server=${this.dnsServers.dnsmasq.ipv4}`,
        'cache-size=1000',
        `min-cache-ttl=${options.minCacheTtl ?? 60}`,
        'log-facility=-',
        'log-queries',
        '',
      ].join('\n'),
    );
    await this.execChecked('node', ['ip', 'addr', 'add', `${this.nodeResolver.ipv4}/32`, 'dev', 'lo'], { timeoutMs: 5000 });
    const handle = this.startProcess('node-resolver', this.namespaces.node, ['dnsmasq', '--keep-in-foreground', `--conf-file=${config}`, '--pid-file', '--user=root']);
    // Asked from the node itself (a workload's policy may not allow it yet). Over lo, which a tc
    // dataplane's parser watches once it heard the address: it may learn ready.lab.test, which
    // no scenario's policy names.
    await waitFor(
      `the node resolver ${this.nodeResolver.ipv4} to answer ${NAMES.ready.name}`,
      async () => {
        if (handle.exited) throw new Error(`the node resolver exited: ${handle.stderr().slice(-2000)}`);
        const result = await this.exec('node', ['dig', '+short', '+time=1', '+tries=1', `@${this.nodeResolver.ipv4}`, NAMES.ready.name, 'A'], { timeoutMs: 3000 });
        return result.stdout.trim() === NAMES.ready.ipv4 ? true : undefined;
      },
      { timeoutMs: Math.max(1, deadline - Date.now()) },
    );
    this.log(`lab ${this.id}: node resolver on ${this.nodeResolver.ipv4}`);
  }

  /**
   * A UDP echo server in the web namespace on each (address, port): a datagram goes back whole,
   * from the address it was sent to. Resolves once every socket is bound.
   */
  async startUdpEcho(bindings: ReadonlyArray<{ readonly address: string; readonly port: number }>, options: { readonly timeoutMs?: number } = {}): Promise<LabProcess> {
    this.assertLive();
    if (this.processes.has('udp-echo')) throw new Error(`lab ${this.id} already runs a UDP echo server`);
    const handle = this.startProcess('udp-echo', this.namespaces.web, ['python3', join(SCRIPTS, 'udp-echo.py'), ...bindings.flatMap((b) => [b.address, String(b.port)])]);
    await handle.waitForOutput(/^listening$/, options.timeoutMs ?? 10_000);
    return handle;
  }

  /** One UDP datagram of `size` bytes from `ns` to address:port; the size of the reply within `timeoutMs`, or undefined. */
  async udpExchange(ns: LabNamespace, address: string, port: number, size: number, timeoutMs: number): Promise<number | undefined> {
    const result = await this.execChecked(ns, ['python3', join(SCRIPTS, 'udp-exchange.py'), address, String(port), String(size), String(timeoutMs / 1000)], { timeoutMs: timeoutMs + 5000 });
    const reply = /^reply (\d+)$/m.exec(result.stdout);
    return reply === null ? undefined : Number(reply[1]);
  }

  startAgentProcess(argv: readonly string[], options: { readonly env?: Readonly<Record<string, string>>; readonly name?: string } = {}): LabProcess {
    this.assertLive();
    this.agentCount += 1;
    const name = options.name ?? `agent-${this.agentCount}`;
    if (this.processes.has(name)) throw new Error(`lab ${this.id} already has a process named ${name}`);
    return this.startProcess(name, this.namespaces.node, argv, options.env);
  }

  /** A long-running tool in one of the lab's namespaces (a packet capture), stopped at teardown like the servers. */
  startTool(ns: LabNamespace, name: string, argv: readonly string[]): LabProcess {
    this.assertLive();
    if (this.processes.has(name)) throw new Error(`lab ${this.id} already has a process named ${name}`);
    return this.startProcess(name, this.namespace(ns), argv);
  }

  keep(): void {
    this.record.keep();
    liveLabs.delete(this);
    if (liveLabs.size === 0) uninstallHandlers();
  }

  /** Synchronous, unconditional teardown (exit and signal paths). */
  teardownNow(): TeardownReport {
    if (this.torndown !== undefined) return this.torndown;
    const state = this.record.snapshot();
    this.record.close();
    this.torndown = teardownSync(state);
    liveLabs.delete(this);
    if (liveLabs.size === 0) uninstallHandlers();
    return this.torndown;
  }

  destroy(): Promise<TeardownReport> {
    this.destroying ??= this.destroyGracefully();
    return this.destroying;
  }

  private async destroyGracefully(): Promise<TeardownReport> {
    const problems: string[] = [];
    // Servers first, politely; teardownNow() SIGKILLs whatever is left.
    await Promise.all([...this.processes.values()].map((handle) => handle.stop(2000)));
    const report = this.teardownNow();
    const namespaces = allNamespaces(this.topology);
    try {
      await waitFor(
        `lab ${this.id} namespaces to disappear`,
        () => (namespaces.some((ns) => namespaceExists(ns) || pidsInNamespace(ns).length > 0) ? undefined : true),
        { timeoutMs: 5000 },
      );
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
    rmSync(this.directory, { recursive: true, force: true });
    return { ...report, problems: [...report.problems, ...problems] };
  }
}

/** Builds a lab. On any failure during bring-up, everything created so far is removed. */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (network namespaces, veth, raw sockets)');
  if (options.sweep ?? true) {
    for (const report of sweepStaleLabs()) options.log?.(`swept stale lab ${report.id}`);
  }
  const plan = planTopology(randomLabId(), options.clients ?? 2);
  const zone = buildZone(options.freshNames ?? 2000);
  const lab = new LabImpl(plan, zone, options.log ?? (() => undefined));
  liveLabs.add(lab);
  installHandlers();
  try {
    await lab.build({ clientResolver: options.clientResolver ?? 'dnsmasq', timeoutMs: options.startTimeoutMs ?? 30_000 });
  } catch (error) {
    await lab.destroy();
    throw error;
  }
  return lab;
}

export { sweepStaleLabs, type TeardownReport } from './registry.js';
export type { LabProcess, ExecOptions, ExecResult } from './process.js';
export type { ConnectTrial, ConnectOptions, ConnectTrialResult, ConnectBatchResult } from './connect.js';
export type { FreshName, ZoneContents } from './zone.js';
export { NAMES, ZONE, freshName } from './zone.js';
