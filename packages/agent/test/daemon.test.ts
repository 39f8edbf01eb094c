import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LEARNED_STATE_VERSION, type DataplaneKind } from '@dnsplane/core';
import { main } from '../src/cli.js';
import { formatStatus } from '../src/commands/status.js';
import type { Daemon } from '../src/daemon.js';
import { fetchStatus, isAgentAlreadyRunning, requestAgent, StatusServer } from '../src/status-socket.js';
import { configTree, createTestDaemon, testEnvironment, waitFor, WEB_POLICY, type ConfigTree, type TestEnvironment } from './helpers.js';

let tree: ConfigTree | undefined;
const daemons: Daemon[] = [];
afterEach(async () => {
  for (const daemon of daemons.splice(0)) await daemon.stop();
  await tree?.cleanup();
  tree = undefined;
});

function daemonFor(t: TestEnvironment, configPath: string, extra: { socketPath?: string; dataplaneOverride?: DataplaneKind; logLevelFromConfig?: boolean } = {}): Daemon {
  const daemon = createTestDaemon(t, configPath, extra);
  daemons.push(daemon);
  return daemon;
}

/** For tests that call reconcile() themselves: no file watching, so no concurrent reconcile. */
const noWatch = { watch: () => ({ close: () => undefined }) };

const policyNames = (t: TestEnvironment): string[] =>
  t.dataplanes[0]?.installed?.policies.map((p) => p.name) ?? [];

describe('the daemon', () => {
  it('installs the compiled state into the configured dataplane', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    expect(t.dataplanes).toHaveLength(1);
    expect(t.dataplanes[0]?.kind).toBe('nftables');
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
    expect(policyNames(t)).toEqual(['web-egress']);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'applied', dataplane: 'nftables', policies: 1, endpoints: 2, domainSets: 1 }));
  });

  it('builds the dataplane from the config alone and prepares it before the resources are read; installs that same one', async () => {
    tree = await configTree();
    const order: string[] = [];
    const base = testEnvironment();
    const t = testEnvironment({
      drivers: base.environment.drivers.map((d) => ({
        ...d,
        create: (context) => {
          const dataplane = d.create(context) as ReturnType<typeof d.create> & { prepare?: () => void };
          dataplane.prepare = () => void order.push('prepare');
          return dataplane;
        },
      })),
      loadInputs: async (path) => {
        order.push('resources');
        return base.environment.loadInputs(path);
      },
    });
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    expect(order).toEqual(['prepare', 'resources']);
    expect(base.dataplanes).toHaveLength(1);
    expect(base.dataplanes[0]?.installs).toHaveLength(1);
    expect(daemon.dataplane).toBe(base.dataplanes[0]);
  });

  it('re-applies when a resource file changes', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    await tree.write('policies/batch.yaml', WEB_POLICY.replace('web-egress', 'batch-egress').replace('app == "web"', 'app == "batch"'));
    await waitFor(() => policyNames(t).includes('batch-egress'), 'the install with the new policy');
    expect(policyNames(t)).toEqual(['batch-egress', 'web-egress']);
    expect(t.dataplanes[0]?.installed?.endpoints.find((e) => e.name === 'batch')?.egressPolicies).toEqual(['batch-egress']);
  });

  it('re-applies when the config changes', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const config = await readFile(tree.configPath, 'utf8');
    await tree.write('dnsplane.yaml', config.replace('"198.18.0.10:53"', '"198.18.0.10:53", "198.18.0.11:5353"'));
    await waitFor(() => t.dataplanes[0]?.installed?.dns.trustedServers.length === 2, 'the install after the config change');
    expect(t.dataplanes[0]?.installed?.dns.trustedServers.map((s) => `${s.address}:${s.port}`)).toEqual([
      '198.18.0.10:53',
      '198.18.0.11:5353',
    ]);
  });

  it('rejects an invalid change, keeps the last good state and logs the problems; a fix applies', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const daemon = daemonFor(t, tree.configPath, { socketPath: tree.socketPath });
    await daemon.start();
    const good = t.dataplanes[0]?.installed;
    await tree.write('policies/web.yaml', WEB_POLICY.replace('protocol: TCP', 'protocol: TCPX'));
    const isProtocolRejection = (l: Record<string, unknown>): boolean =>
      l['event'] === 'change_rejected' && JSON.stringify(l['problems']).includes('.protocol');
    await waitFor(() => t.logs.some(isProtocolRejection), 'the change to be rejected');
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
    expect(t.dataplanes[0]?.installed).toBe(good);
    const rejection = t.logs.find(isProtocolRejection);
    expect(rejection?.['problems']).toEqual([expect.stringMatching(/policies\/web\.yaml#0: spec\.egress\[0\]\.protocol: /)]);
    const status = await fetchStatus(tree.socketPath);
    expect(status.rejected).toEqual(rejection?.['problems']);
    expect(status.lastApply).toMatchObject({ policies: 1, endpoints: 2, domainSets: 1 });

    await tree.write('policies/web.yaml', WEB_POLICY.replace('order: 100', 'order: 7'));
    await waitFor(() => t.dataplanes[0]?.installed?.policies[0]?.order === 7, 'the fixed change to apply');
    expect(daemon.outcomes).toContain('applied');
    expect(t.dataplanes[0]?.installed?.policies[0]?.order).toBe(7);
    expect((await fetchStatus(tree.socketPath)).rejected).toEqual([]);
    // brief: the daemon's own state, without asking the dataplane
    const statusSpy = vi.spyOn(t.dataplanes[0]!, 'status');
    const brief = await fetchStatus(tree.socketPath, 5_000, { brief: true });
    expect(brief).toMatchObject({ brief: true, dataplane: 'nftables', objects: [], counters: {}, rejected: [] });
    expect(brief.learned).toBeUndefined();
    expect(brief.lastApply).toMatchObject({ policies: 1 });
    expect(brief.startup?.phasesMs).toEqual(expect.objectContaining({ inputs: expect.any(Number), install: expect.any(Number), import: expect.any(Number) }));
    expect(brief.startup?.restoredAt).toEqual(expect.any(String));
    expect(statusSpy).not.toHaveBeenCalled();
    expect((await fetchStatus(tree.socketPath)).learned).toBe(0);
  });

  it('keeps the last good state when the driver fails to install', async () => {
    tree = await configTree();
    const t = testEnvironment(noWatch);
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const dataplane = t.dataplanes[0];
    if (!dataplane) throw new Error('no dataplane');
    dataplane.failNextInstall = new Error('nft: transaction rejected');
    await tree.write('policies/web.yaml', WEB_POLICY.replace('order: 100', 'order: 8'));
    expect(await daemon.reconcile()).toBe('failed');
    expect(dataplane.installed?.policies[0]?.order).toBe(100);
    expect(daemon.rejected).toEqual(['nft: transaction rejected']);
    expect(await daemon.reconcile()).toBe('applied');
    expect(dataplane.installed?.policies[0]?.order).toBe(8);
  });

  it('does not re-install when the files change but the desired state does not', async () => {
    tree = await configTree();
    const t = testEnvironment(noWatch);
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    await tree.write('policies/web.yaml', `# a comment\n${WEB_POLICY}`);
    expect(await daemon.reconcile()).toBe('unchanged');
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
  });

  it('installs again when interfaces appear, go or are re-created — not on other link events', async () => {
    tree = await configTree();
    let links = new Map([['lo', 1], ['web0', 7]]);
    let fire: (() => void) | undefined;
    let closed = 0;
    const t = testEnvironment({
      links: {
        read: () => new Map(links),
        watch: (onEvent) => {
          fire = onEvent;
          return { close: () => void (closed += 1) };
        },
      },
    });
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
    if (fire === undefined) throw new Error('the daemon did not watch interfaces');
    const onEvent = fire;

    // A link event that changes no name or index (e.g. up/down): nothing scheduled.
    onEvent();
    expect(await daemon.reconcile()).toBe('unchanged');
    expect(t.dataplanes[0]?.installs).toHaveLength(1);

    // A workload's veth appears: installed again, with the same desired state.
    links = new Map([...links, ['batch0', 9]]);
    onEvent();
    await waitFor(() => t.dataplanes[0]?.installs.length === 2, 'the install after the new interface');
    expect(t.dataplanes[0]?.installs[1]).toEqual(t.dataplanes[0]?.installs[0]);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'interfaces_changed', added: ['batch0'], removed: [] }));

    // Re-created under the same name (a new index): installed again.
    links = new Map([...links, ['web0', 11]]);
    onEvent();
    await waitFor(() => t.dataplanes[0]?.installs.length === 3, 'the install after the re-created interface');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'interfaces_changed', added: ['web0'], removed: ['web0'] }));

    // Gone: installed again (the programs' per-interface entries go).
    links.delete('batch0');
    onEvent();
    await waitFor(() => t.dataplanes[0]?.installs.length === 4, 'the install after the removed interface');
    expect(await daemon.reconcile()).toBe('unchanged');
    expect(t.dataplanes[0]?.installs).toHaveLength(4);

    await daemon.stop();
    expect(closed).toBe(1);
  });

  it("installs again when a trusted server's address comes to the node or leaves it (a node-local resolver) — not for other addresses", async () => {
    tree = await configTree(); // trusts 198.18.0.10:53
    const addresses = new Set(['127.0.0.1', '198.18.0.2']);
    let fire: (() => void) | undefined;
    const t = testEnvironment({
      links: {
        read: () => new Map([['lo', 1]]),
        watch: (onEvent) => {
          fire = onEvent;
          return { close: () => undefined };
        },
      },
      nodeAddresses: () => new Set(addresses),
    });
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    if (fire === undefined) throw new Error('the daemon did not watch interfaces');
    const onEvent = fire;
    // Another address of the node: nothing to do.
    addresses.add('198.18.0.3');
    onEvent();
    expect(await daemon.reconcile()).toBe('unchanged');
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
    // The trusted server's address comes up on the node: installed again, same state.
    addresses.add('198.18.0.10');
    onEvent();
    await waitFor(() => t.dataplanes[0]?.installs.length === 2, 'the install after the resolver address came');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'local_resolvers_changed', before: [], now: ['198.18.0.10:53'] }));
    expect(await daemon.reconcile()).toBe('unchanged');
    // And goes again.
    addresses.delete('198.18.0.10');
    onEvent();
    await waitFor(() => t.dataplanes[0]?.installs.length === 3, 'the install after the resolver address went');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'local_resolvers_changed', before: ['198.18.0.10:53'], now: [] }));
    await daemon.stop();
  });

  it('keeps running when the interface watch fails, says so, starts it again later and installs for what changed meanwhile', async () => {
    tree = await configTree();
    const links = new Map([['lo', 1]]);
    let starts = 0;
    let failLater: ((error: Error) => void) | undefined;
    const t = testEnvironment({
      watchRetryMs: 20,
      links: {
        read: () => new Map(links),
        watch: (_onEvent, onError) => {
          starts += 1;
          // The first start fails at once (a tool missing), the second later (the child killed).
          if (starts === 1) onError(new Error('ip: not found'));
          else failLater = onError;
          return { close: () => undefined };
        },
      },
    });
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'interface_watch_failed', retryInMs: 20 }));
    await waitFor(() => t.logs.some((l) => l['event'] === 'interface_watch_restarted'), 'the watch started again');
    expect(t.dataplanes[0]?.installs).toHaveLength(1); // nothing changed while it was down
    failLater?.(new Error('ip monitor ended (SIGKILL)'));
    // A workload's interface appears while no watch runs: the restart installs for it.
    links.set('web0', 7);
    await waitFor(() => t.dataplanes[0]?.installs.length === 2, 'the install for the interface that came while the watch was down');
    expect(starts).toBe(3);
    expect(t.logs.filter((l) => l['event'] === 'interface_watch_failed').map((l) => l['retryInMs'])).toEqual([20, 40]);
  });

  it('starts the removal watch again after it fails, and checks at once what it may have missed', async () => {
    tree = await configTree();
    const failures: Array<(error: Error) => void> = [];
    const t = testEnvironment({
      ...noWatch,
      watchRetryMs: 20,
      removals: (_kind, _config, _onRemoved, onError) => {
        failures.push(onError);
        return { close: () => undefined };
      },
    });
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const dataplane = t.dataplanes[0];
    if (dataplane === undefined) throw new Error('no dataplane');
    expect(failures).toHaveLength(1);
    dataplane.missing = ['tc ingress wl1 dnsplane parser'];
    failures[0]!(new Error('tc monitor ended (SIGKILL)'));
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'removal_watch_failed', retryInMs: 20 }));
    expect((await daemon.status({ brief: true })).watches).toEqual({ interfaces: 'off', removals: 'retrying' });
    await waitFor(() => t.logs.some((l) => l['event'] === 'repaired'), 'the repair after the restart');
    expect((await daemon.status({ brief: true })).watches).toEqual({ interfaces: 'off', removals: 'running' });
    expect(formatStatus(await daemon.status({ brief: true }))).toContain('\nwatches:     interfaces off, removals running\n');
    expect(failures).toHaveLength(2);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'removal_watch_restarted' }));
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'drift', trigger: 'watch_restarted' }));
    await daemon.stop();
    // A failure reported after stop is not the watch in force: nothing logged, nothing scheduled.
    failures[1]!(new Error('late'));
    expect(t.logs.filter((l) => l['event'] === 'removal_watch_failed')).toHaveLength(1);
  });

  it('rejects a change to a setting the running driver was built with, naming the file, field and both values; the state stays', async () => {
    tree = await configTree();
    const t = testEnvironment(noWatch);
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const config = await readFile(tree.configPath, 'utf8');
    // With a policy change in the same edit: nothing of it is applied either.
    await tree.write('dnsplane.yaml', `${config}nftables: { table: dnsplane_next }\nbpf: { pinRoot: /sys/fs/bpf/dnsplane_next }\n`);
    await tree.write('policies/web.yaml', WEB_POLICY.replace('order: 100', 'order: 9'));
    expect(await daemon.reconcile()).toBe('rejected');
    expect(daemon.rejected).toEqual([
      `${tree.configPath}: nftables.table: the running nftables dataplane was built with "dnsplane"; changing it to "dnsplane_next" needs a restart of the daemon; keeping the last good state`,
      `${tree.configPath}: bpf.pinRoot: the running nftables dataplane was built with "/sys/fs/bpf/dnsplane"; changing it to "/sys/fs/bpf/dnsplane_next" needs a restart of the daemon; keeping the last good state`,
    ]);
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'change_rejected' }));
    // Back to the running settings: the policy change applies.
    await tree.write('dnsplane.yaml', config);
    expect(await daemon.reconcile()).toBe('applied');
    expect(daemon.rejected).toEqual([]);
    expect(t.dataplanes[0]?.installs).toHaveLength(2);
  });

  it('installs again when dns.interfaces changes (where the parser watches is part of the state)', async () => {
    tree = await configTree();
    const t = testEnvironment(noWatch);
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const config = await readFile(tree.configPath, 'utf8');
    await tree.write('dnsplane.yaml', config.replace('dns: { trustedServers: ["198.18.0.10:53"] }', 'dns: { trustedServers: ["198.18.0.10:53"], interfaces: [wl9, eth0] }'));
    expect(await daemon.reconcile()).toBe('applied');
    expect(t.dataplanes[0]?.installs.map((s) => s.dns.interfaces)).toEqual([[], ['eth0', 'wl9']]);
  });

  it('takes statePath, log.level and driftCheckSeconds from a change that leaves the desired state the same', async () => {
    tree = await configTree();
    const t = testEnvironment(noWatch);
    const daemon = daemonFor(t, tree.configPath, { logLevelFromConfig: true });
    await daemon.start();
    const dataplane = t.dataplanes[0];
    if (dataplane === undefined) throw new Error('no dataplane');
    const config = await readFile(tree.configPath, 'utf8');
    const movedState = join(tree.dir, 'moved', 'state.json');
    await tree.write(
      'dnsplane.yaml',
      `${config.replace(tree.statePath, movedState)}log: { level: warn }\ndriftCheckSeconds: 1\n`,
    );
    const checksBefore = dataplane.missingChecks;
    expect(await daemon.reconcile()).toBe('unchanged');
    expect(dataplane.installs).toHaveLength(1);
    // The drift check now runs every second (it was every 30).
    await waitFor(() => dataplane.missingChecks > checksBefore, 'a periodic drift check at the new interval', 5_000);
    expect(t.logs.filter((l) => l['event'] === 'unchanged')).toHaveLength(0); // a debug line: the level is warn now
    expect(await daemon.persist()).toBeGreaterThanOrEqual(0);
    expect(existsSync(movedState)).toBe(true);
  });

  it('serves metrics on metrics.listen: starts, moves and stops the endpoint as the config changes; a failed listen is retried by the next change', async () => {
    tree = await configTree();
    const events: string[] = [];
    let refuse = false;
    let page: (() => Promise<string>) | undefined;
    const t = testEnvironment({
      ...noWatch,
      metricsServer: async (listen, render) => {
        if (refuse) {
          events.push(`refused ${listen}`);
          throw new Error('EADDRINUSE');
        }
        events.push(`listen ${listen}`);
        page = render;
        return { close: async () => void events.push(`close ${listen}`) };
      },
    });
    const daemon = daemonFor(t, tree.configPath);
    const config = await readFile(tree.configPath, 'utf8');
    const withListen = async (listen: string | undefined): Promise<void> => {
      await tree?.write('dnsplane.yaml', listen === undefined ? config : `${config}metrics: { listen: "${listen}" }\n`);
      expect(await daemon.reconcile()).toBe('unchanged');
    };
    await daemon.start();
    expect(events).toEqual([]);
    expect((await daemon.status()).metrics).toBeUndefined();

    await withListen('127.0.0.1:9464');
    await waitFor(() => events.length === 1, 'the endpoint to start');
    expect(events).toEqual(['listen 127.0.0.1:9464']);
    expect((await daemon.status()).metrics).toEqual({ listen: '127.0.0.1:9464', state: 'serving' });
    // The page is the daemon's status in Prometheus text.
    expect(await page?.()).toContain('dnsplane_info{dataplane="nftables"} 1');
    // … read as a counters status: no listing of every learned element per scrape
    expect(t.dataplanes[0]?.statusRequests.at(-1)).toEqual({ detail: 'counters' });
    await withListen('127.0.0.1:9464'); // the same: nothing happens
    await withListen('[::1]:9464');
    await waitFor(() => events.length === 3, 'the endpoint to move');
    expect(events.slice(1)).toEqual(['close 127.0.0.1:9464', 'listen [::1]:9464']);

    refuse = true;
    await withListen('127.0.0.1:9465');
    await waitFor(() => events.length === 5, 'the failed listen');
    expect(events.slice(3)).toEqual(['close [::1]:9464', 'refused 127.0.0.1:9465']);
    expect((await daemon.status()).metrics).toEqual({ listen: '127.0.0.1:9465', state: 'failed' });
    expect(formatStatus(await daemon.status({ brief: true }))).toContain('\nmetrics:     http://127.0.0.1:9465/metrics (failed)\n');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'metrics_failed', listen: '127.0.0.1:9465' }));
    refuse = false;
    await withListen('127.0.0.1:9465'); // the same setting after a failure: tried again
    await waitFor(() => events.length === 6, 'the retried listen');
    expect((await daemon.status()).metrics?.state).toBe('serving');

    await withListen(undefined);
    await waitFor(() => events.length === 7, 'the endpoint to stop');
    expect(events.at(-1)).toBe('close 127.0.0.1:9465');
    expect((await daemon.status()).metrics).toBeUndefined();
    // stop() closes it
    await withListen('127.0.0.1:9466');
    await waitFor(() => events.length === 8, 'the endpoint to start again');
    await daemon.stop();
    expect(events.slice(7)).toEqual(['listen 127.0.0.1:9466', 'close 127.0.0.1:9466']);
  });

  it('refuses to switch dataplanes on a config change (that is a migration)', async () => {
    tree = await configTree();
    const t = testEnvironment({ kinds: ['nftables', 'iptables'], ...noWatch });
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const config = await readFile(tree.configPath, 'utf8');
    await tree.write('dnsplane.yaml', config.replace('dataplane: nftables', 'dataplane: iptables'));
    expect(await daemon.reconcile()).toBe('rejected');
    expect(daemon.rejected[0]).toMatch(/dataplane: changing the dataplane from nftables to iptables needs `dnsplane migrate --to iptables`/);
    expect(t.dataplanes).toHaveLength(1);
  });

  it('persists learned state atomically and restores it on the next start (expired entries dropped)', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const first = daemonFor(t, tree.configPath);
    await first.start();
    const dataplane = t.dataplanes[0];
    const setId = dataplane?.installed?.domainSets[0]?.id ?? 0;
    const now = t.clock.now();
    dataplane?.learn({ setId, family: 4, address: '198.18.20.1', expiresAt: now + 60_000, name: 'api.example.test' });
    dataplane?.learn({ setId, family: 6, address: 'fd00::20:1', expiresAt: now + 5_000 });
    dataplane?.learn({ setId, family: 4, address: '198.18.20.2', expiresAt: now + 120_000 });
    expect(await first.persist()).toBe(3);
    const saved = JSON.parse(await readFile(tree.statePath, 'utf8')) as { version: number; entries: unknown[] };
    expect(saved.version).toBe(LEARNED_STATE_VERSION);
    expect(saved.entries).toHaveLength(3);
    await first.stop();

    t.clock.advance(10_000); // the fd00::20:1 entry has expired meanwhile
    const second = daemonFor(t, tree.configPath);
    await second.start();
    const restored = t.dataplanes[1];
    const imports = restored?.events.filter((e) => e.type === 'importLearned') ?? [];
    expect(imports).toHaveLength(1);
    expect(restored?.learned.entries()).toEqual([
      { setId, family: 4, address: '198.18.20.1', expiresAt: now + 60_000, name: 'api.example.test' },
      { setId, family: 4, address: '198.18.20.2', expiresAt: now + 120_000 },
    ]);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'learned_restored', entries: 2, skipped: 1 }));
  });

  it('a save keeps the question names it knows for entries the dataplane exports without one (the kernel maps hold no names)', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const dataplane = t.dataplanes[0];
    if (dataplane === undefined) throw new Error('no dataplane');
    const setId = dataplane.installed?.domainSets[0]?.id ?? 0;
    const now = t.clock.now();
    dataplane.learn({ setId, family: 4, address: '198.18.20.1', expiresAt: now + 60_000, name: 'api.example.test' });
    expect(await daemon.persist()).toBe(1);
    // refreshed in the kernel, exported as the maps give it: no name
    dataplane.exportLearned = async () => [{ setId, family: 4, address: '198.18.20.1', expiresAt: now + 90_000 }];
    expect(await daemon.persist()).toBe(1);
    const saved = JSON.parse(await readFile(tree.statePath, 'utf8')) as { entries: unknown[] };
    expect(saved.entries).toEqual([{ setId, family: 4, address: '198.18.20.1', expiresAt: now + 90_000, name: 'api.example.test' }]);
    await daemon.stop();
  });

  it('installs the same state again when its kernel objects are gone, imports what it knows, and retries a failed repair', async () => {
    tree = await configTree();
    const t = testEnvironment(noWatch);
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const dataplane = t.dataplanes[0];
    if (dataplane === undefined) throw new Error('no dataplane');
    const setId = dataplane.installed?.domainSets[0]?.id ?? 0;
    dataplane.learn({ setId, family: 4, address: '198.18.20.1', expiresAt: t.clock.now() + 60_000 });
    await daemon.persist(); // what the daemon knows now includes it
    expect(await daemon.checkDrift()).toBe('intact');
    expect(dataplane.installs).toHaveLength(1);

    // someone flushed the ruleset; the first repair fails (e.g. the kernel refuses for a moment)
    dataplane.missing = ['nft table inet dnsplane'];
    dataplane.failNextInstall = new Error('busy');
    expect(await daemon.checkDrift()).toBe('failed');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'drift', missing: ['nft table inet dnsplane'], count: 1 }));
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'drift_repair_failed' }));
    expect((await daemon.status({ brief: true })).repairs).toEqual({
      count: 0,
      lastAt: new Date(t.clock.now()).toISOString(),
      lastMissing: ['nft table inet dnsplane'],
      lastFailed: true,
    });
    expect(await daemon.checkDrift()).toBe('repaired');
    const repairs = (await daemon.status({ brief: true })).repairs;
    expect(repairs).toMatchObject({ count: 1, lastMissing: ['nft table inet dnsplane'], lastFailed: false });
    expect(formatStatus(await daemon.status({ brief: true }))).toContain(
      `\nrepairs:     1 (objects someone else removed, installed again); last at ${repairs?.lastAt}: nft table inet dnsplane\n`,
    );
    expect(dataplane.installs).toHaveLength(2);
    expect(dataplane.installs[1]).toEqual(dataplane.installs[0]);
    const imported = dataplane.events.filter((e) => e.type === 'importLearned').at(-1);
    expect(imported).toMatchObject({ entries: [expect.objectContaining({ address: '198.18.20.1' })] });
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'repaired', count: 1 }));
    expect(await daemon.checkDrift()).toBe('intact');
    await daemon.stop();
  });

  it('checks at once when the removal watch reports objects of the dataplane gone (once for a burst of lines), and closes the watch at stop', async () => {
    tree = await configTree();
    const watches: Array<{ kind: string; table: string; onRemoved: () => void; closed: boolean }> = [];
    const t = testEnvironment({
      ...noWatch,
      removals: (kind, config, onRemoved) => {
        const watch = { kind, table: config.nftables.table, onRemoved, closed: false };
        watches.push(watch);
        return { close: () => void (watch.closed = true) };
      },
    });
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    expect(watches.map((w) => [w.kind, w.table])).toEqual([['nftables', 'dnsplane']]);
    const dataplane = t.dataplanes[0];
    if (dataplane === undefined) throw new Error('no dataplane');
    dataplane.missing = ['nft table inet dnsplane'];
    const checksBefore = dataplane.missingChecks;
    // A flush prints a line per rule or filter: the burst brings one check.
    for (let line = 0; line < 5; line += 1) watches[0]!.onRemoved();
    await waitFor(() => t.logs.some((l) => l['event'] === 'repaired'), 'the repair the watch brought');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'drift', trigger: 'kernel_event', missing: ['nft table inet dnsplane'] }));
    expect(dataplane.installs).toHaveLength(2);
    expect(dataplane.missingChecks).toBe(checksBefore + 1);
    // The next event after that check brings the next one.
    watches[0]!.onRemoved();
    await waitFor(() => dataplane.missingChecks === checksBefore + 2, 'the check of the next event');
    expect(dataplane.installs).toHaveLength(2);
    await daemon.stop();
    expect(watches[0]!.closed).toBe(true);
  });

  it('refuses to start while another daemon answers on the status socket, before installing anything', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const first = daemonFor(t, tree.configPath, { socketPath: tree.socketPath });
    await first.start();
    const second = daemonFor(t, tree.configPath, { socketPath: tree.socketPath });
    let error: unknown;
    await second.start().catch((caught: unknown) => (error = caught));
    expect(isAgentAlreadyRunning(error)).toBe(true);
    expect((error as Error).message).toBe(`another dnsplane daemon is running (it answers on ${tree.socketPath})`);
    expect(t.dataplanes).toHaveLength(1);
    await second.stop();
    expect((await fetchStatus(tree.socketPath)).dataplane).toBe('nftables');
  });

  it('starts without learned state when the state file is corrupt, and says so', async () => {
    tree = await configTree();
    await tree.write('state/state.json', '{"version": 1, "savedAt": 0, "entries": [{"setId": "x"}]}');
    const t = testEnvironment();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    expect(t.dataplanes[0]?.installs).toHaveLength(1);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'state_file_corrupt' }));
  });
});

describe('dnsplane run / status', () => {
  it('serves status, and stops cleanly on SIGTERM without removing enforcement', async () => {
    tree = await configTree();
    const MiB = 1_048_576;
    const t = testEnvironment({ memory: () => ({ rss: 350.5 * MiB, heapUsed: 60 * MiB, heapTotal: 250.25 * MiB, external: 3 * MiB }) });
    const exit = main(['run', '-c', tree.configPath, '--socket', tree.socketPath], t.environment);
    await waitFor(() => existsSync(tree?.socketPath ?? '') && t.dataplanes[0]?.installed !== undefined, 'the daemon to start');

    const status = testEnvironment({ env: { DNSPLANE_SOCKET: tree.socketPath } });
    expect(await main(['status', '--json'], status.environment)).toBe(0);
    const report = JSON.parse(status.stdout()) as Record<string, unknown>;
    expect(report).toMatchObject({ dataplane: 'nftables', configFile: tree.configPath, learned: 0, rejected: [] });
    expect(report['objects']).toEqual(['fake nftables (1 policies)']);
    expect(report['memory']).toEqual({ rss: 350.5 * MiB, heapUsed: 60 * MiB, heapTotal: 250.25 * MiB, external: 3 * MiB });

    const human = testEnvironment();
    expect(await main(['status', '--socket', tree.socketPath], human.environment)).toBe(0);
    expect(human.stdout()).toMatch(/^dataplane: {3}nftables\n/);
    expect(human.stdout()).toContain('last apply:  ');
    expect(human.stdout()).toContain('\nmemory:      350.5 MiB resident; V8 heap 60.0 MiB in use of 250.3 reserved; 3.0 MiB outside it\n');

    t.signals.emit('SIGTERM');
    expect(await exit).toBe(0);
    const dataplane = t.dataplanes[0];
    expect(dataplane?.closed).toBe(true);
    expect(dataplane?.removed).toBe(false);
    expect(dataplane?.events.some((e) => e.type === 'remove')).toBe(false);
    expect(existsSync(tree.socketPath)).toBe(false);
    expect(existsSync(tree.statePath)).toBe(true);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'stopped' }));

    const after = testEnvironment();
    expect(await main(['status', '--socket', tree.socketPath], after.environment)).toBe(1);
    expect(after.stderr()).toMatch(/cannot reach the dnsplane daemon on .*agent\.sock/);
  });

  it('reads the config and resources again on SIGHUP, also when no watcher saw the change, and keeps running', async () => {
    tree = await configTree();
    // A file system whose changes are not reported: only the signal can bring the change in.
    const t = testEnvironment(noWatch);
    const exit = main(['run', '-c', tree.configPath, '--socket', tree.socketPath], t.environment);
    await waitFor(() => (t.dataplanes[0]?.installs.length ?? 0) === 1 && existsSync(tree?.socketPath ?? ''), 'the daemon to start');
    await tree.write('policies/batch.yaml', WEB_POLICY.replace('web-egress', 'batch-egress').replace('app == "web"', 'app == "batch"'));
    t.signals.emit('SIGHUP');
    await waitFor(() => t.logs.some((l) => l['event'] === 'reloaded'), 'the reload');
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'reloaded', outcome: 'applied' }));
    expect(policyNames(t)).toEqual(['batch-egress', 'web-egress']);
    // Nothing changed since: the next SIGHUP applies nothing; an invalid file is rejected.
    t.signals.emit('SIGHUP');
    await waitFor(() => t.logs.filter((l) => l['event'] === 'reloaded').length === 2, 'the second reload');
    expect(t.logs.filter((l) => l['event'] === 'reloaded').at(-1)).toMatchObject({ outcome: 'unchanged' });
    await tree.write('policies/batch.yaml', 'kind: Policy\nmetadata: { name: batch-egress }\nspec: { egress: [{ action: Maybe }] }\n');
    t.signals.emit('SIGHUP');
    await waitFor(() => t.logs.filter((l) => l['event'] === 'reloaded').length === 3, 'the third reload');
    expect(t.logs.filter((l) => l['event'] === 'reloaded').at(-1)).toMatchObject({ outcome: 'rejected' });
    expect(t.dataplanes[0]?.installs).toHaveLength(2);
    expect(policyNames(t)).toEqual(['batch-egress', 'web-egress']);
    t.signals.emit('SIGTERM');
    expect(await exit).toBe(0);
    expect(t.signals.listenerCount('SIGHUP')).toBe(0);
  });

  it('stops on SIGTERM while a status client stays connected without asking anything', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const exit = main(['run', '-c', tree.configPath, '--socket', tree.socketPath], t.environment);
    await waitFor(() => (t.dataplanes[0]?.installs.length ?? 0) === 1 && existsSync(tree?.socketPath ?? ''), 'the daemon to start');
    const idle = createConnection(tree.socketPath);
    const closed = new Promise<void>((resolve) => idle.on('close', () => resolve()));
    idle.on('error', () => undefined);
    await new Promise<void>((resolve) => idle.once('connect', () => resolve()));
    try {
      t.signals.emit('SIGTERM');
      // the daemon does not wait for the client: it closes the connection, saves and exits
      let exited = false;
      void exit.then(() => (exited = true));
      await waitFor(() => exited, 'the daemon to exit with a client connected', 3_000);
      expect(await exit).toBe(0);
      await closed;
      expect(existsSync(tree.statePath)).toBe(true);
      expect(t.dataplanes[0]?.closed).toBe(true);
    } finally {
      idle.destroy();
    }
  });

  it('hangs up on a status client that sends no request in time, and still answers the next', async () => {
    tree = await configTree();
    const server = new StatusServer(tree.socketPath, async () => ({ ok: true }), 200);
    await server.listen();
    try {
      const idle = createConnection(tree.socketPath);
      idle.setEncoding('utf8');
      let received = '';
      idle.on('data', (chunk: string) => (received += chunk));
      await new Promise<void>((resolve) => idle.on('close', () => resolve()));
      expect(JSON.parse(received)).toEqual({ error: 'no request within 200 ms' });
      expect(await requestAgent(tree.socketPath, { request: 'status' })).toEqual({ ok: true });
    } finally {
      await server.close();
    }
  });

  it('stops on SIGINT too', async () => {
    tree = await configTree();
    const t = testEnvironment();
    const exit = main(['run', '-c', tree.configPath, '--socket', tree.socketPath], t.environment);
    await waitFor(() => (t.dataplanes[0]?.installs.length ?? 0) === 1 && existsSync(tree?.socketPath ?? ''), 'the daemon to start');
    t.signals.emit('SIGINT');
    expect(await exit).toBe(0);
    expect(t.dataplanes[0]?.closed).toBe(true);
  });

  it('exits 1 with every problem when the initial input is invalid', async () => {
    tree = await configTree();
    await tree.write('policies/web.yaml', 'kind: Policy\nmetadata: { name: Bad_Name }\nspec: {}\n');
    const t = testEnvironment();
    expect(await main(['run', '-c', tree.configPath, '--socket', tree.socketPath], t.environment)).toBe(1);
    expect(t.stderr()).toMatch(/policies\/web\.yaml#0: metadata\.name: /);
    // The dataplane built from the config alone (to prepare ahead of the resources) installed
    // nothing, changed nothing and was closed; nothing else was built.
    expect(t.dataplanes).toHaveLength(1);
    expect(t.dataplanes[0]?.installs).toHaveLength(0);
    expect(t.dataplanes[0]?.removed).toBe(false);
    expect(t.dataplanes[0]?.closed).toBe(true);
  });
});
