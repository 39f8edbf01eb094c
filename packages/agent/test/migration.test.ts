// Migration, restart reconcile, bounded and corrupt state files, status --learned and
// uninstall — against fake dataplanes whose "kernel" (installed state, learned entries,
// removal) outlives the daemon, so restarts behave like the real thing. Every call on every
// fake is logged in one shared sequence to assert make-before-break ordering.
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  LearnedStore,
  type Clock,
  type Dataplane,
  type DataplaneKind,
  type DataplaneStatus,
  type DesiredState,
  type LearnedEntry,
  type ProcessResult,
  type ProcessRunner,
} from '@dnsplane/core';
import { main } from '../src/cli.js';
import type { Daemon } from '../src/daemon.js';
import type { DriverContext, DriverRegistration } from '../src/drivers.js';
import { boundEntries, markerPathFor } from '../src/state-file.js';
import { fetchStatus } from '../src/status-socket.js';
import { configTree, createTestDaemon, testEnvironment, waitFor, type ConfigTree, type TestEnvironment } from './helpers.js';

/** What the kernel holds for one dataplane kind; survives daemon restarts. */
interface FakeKernel {
  installed: DesiredState | undefined;
  readonly learned: LearnedStore;
}

class KernelFake implements Dataplane {
  constructor(
    readonly kind: DataplaneKind,
    private readonly kernel: FakeKernel,
    private readonly log: string[],
  ) {}
  render(): string {
    return '';
  }
  async install(state: DesiredState): Promise<void> {
    this.log.push(`${this.kind}.install`);
    this.kernel.installed = state;
    this.kernel.learned.retainSets(new Set(state.domainSets.map((s) => s.id)));
  }
  async keepLearnedEvents(keep: boolean): Promise<void> {
    this.log.push(`${this.kind}.keepLearnedEvents(${keep})`);
  }
  async exportLearned(): Promise<LearnedEntry[]> {
    this.log.push(`${this.kind}.exportLearned`);
    return this.kernel.learned.entries();
  }
  async importLearned(entries: readonly LearnedEntry[]): Promise<void> {
    this.log.push(`${this.kind}.importLearned(${entries.length})`);
    this.kernel.learned.recordAll(entries);
  }
  async status(): Promise<DataplaneStatus> {
    return { kind: this.kind, objects: this.kernel.installed ? [`fake ${this.kind}`] : [], counters: {}, learned: this.kernel.learned.size };
  }
  async missingObjects(): Promise<string[]> {
    return []; // nothing removes a fake kernel's objects behind the driver's back
  }
  async remove(): Promise<void> {
    this.log.push(`${this.kind}.remove`);
    this.kernel.installed = undefined;
    this.kernel.learned.clear();
  }
  async close(): Promise<void> {
    this.log.push(`${this.kind}.close`);
  }
}

interface Kernels {
  readonly byKind: Map<DataplaneKind, FakeKernel>;
  readonly log: string[];
  readonly drivers: DriverRegistration[];
}

function kernels(clock: Clock, kinds: readonly DataplaneKind[] = ['nftables', 'iptables', 'ebpf']): Kernels {
  const byKind = new Map<DataplaneKind, FakeKernel>(kinds.map((k) => [k, { installed: undefined, learned: new LearnedStore(clock) }]));
  const log: string[] = [];
  const drivers = kinds.map((kind) => ({
    kind,
    builtFrom: [],
    create: (context: DriverContext) => {
      // iptables: one "kernel" per explicit backend (legacy and nft are different rule sets).
      const backend = context.config.iptables.backend;
      if (kind !== 'iptables' || backend === 'auto') return new KernelFake(kind, byKind.get(kind) as FakeKernel, log);
      const key = `iptables-${backend}` as DataplaneKind;
      if (!byKind.has(key)) byKind.set(key, { installed: undefined, learned: new LearnedStore(clock) });
      return new KernelFake(key, byKind.get(key) as FakeKernel, log);
    },
  }));
  return { byKind, log, drivers };
}

let tree: ConfigTree | undefined;
const daemons: Daemon[] = [];
afterEach(async () => {
  for (const daemon of daemons.splice(0)) await daemon.stop();
  await tree?.cleanup();
  tree = undefined;
});

const noWatch = { watch: () => ({ close: () => undefined }) };

function setup(replace: (k: Kernels) => DriverRegistration[] = (k) => k.drivers): { t: TestEnvironment; k: Kernels } {
  let environment: TestEnvironment | undefined;
  const k = kernels({ now: () => environment?.clock.now() ?? 0 });
  const t = testEnvironment({ drivers: replace(k), ...noWatch });
  environment = t;
  return { t, k };
}

function daemonFor(t: TestEnvironment, configPath: string, extra: { socketPath?: string; stateMaxEntries?: number } = {}): Daemon {
  const daemon = createTestDaemon(t, configPath, extra);
  daemons.push(daemon);
  return daemon;
}

async function setDataplane(kind: DataplaneKind): Promise<void> {
  if (!tree) throw new Error('no tree');
  const config = await readFile(tree.configPath, 'utf8');
  await tree.write('dnsplane.yaml', config.replace(/^dataplane: \w+$/m, `dataplane: ${kind}`));
}

const setIdOf = (k: Kernels, kind: DataplaneKind): number => k.byKind.get(kind)?.installed?.domainSets[0]?.id ?? 0;

describe('migration (make before break)', () => {
  it('migrate --to on a running daemon installs and fills the new dataplane before removing the old one', async () => {
    tree = await configTree({ dataplane: 'iptables' });
    const { t, k } = setup();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    const setId = setIdOf(k, 'iptables');
    const now = t.clock.now();
    k.byKind.get('iptables')?.learned.record({ setId, family: 4, address: '198.18.20.1', expiresAt: now + 60_000, name: 'api.example.test' });
    k.byKind.get('iptables')?.learned.record({ setId, family: 6, address: 'fd00::20:1', expiresAt: now + 90_000 });
    k.log.splice(0);

    const report = await daemon.migrate('nftables');
    expect(report).toMatchObject({ from: 'iptables', to: 'nftables', imported: 2 });
    // The old one is removed only after the new one holds the desired state and the entries.
    expect(k.log.slice(0, 6)).toEqual([
      'nftables.install',
      'iptables.exportLearned',
      'nftables.exportLearned',
      'nftables.importLearned(2)',
      'iptables.remove',
      'iptables.close',
    ]);
    expect(k.byKind.get('nftables')?.learned.entries().map((e) => e.address)).toEqual(['198.18.20.1', 'fd00::20:1']);
    expect(k.byKind.get('iptables')?.installed).toBeUndefined();
    expect(daemon.kind).toBe('nftables');
    const marker = JSON.parse(await readFile(markerPathFor(tree.statePath), 'utf8')) as { dataplane: string };
    expect(marker.dataplane).toBe('nftables');
    // A reload does not bounce back while the config still says iptables; status says so.
    expect(await daemon.reconcile()).not.toBe('rejected');
    expect((await daemon.status()).configuredDataplane).toBe('iptables');
    // Migrating to the kind in force does nothing.
    expect(await daemon.migrate('nftables')).toBeUndefined();
  });

  it('migrating away from nftables keeps the learned events on until its mirror is removed, then turns them off', async () => {
    tree = await configTree({ dataplane: 'nftables' });
    const { t, k } = setup();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    expect(k.log).not.toContain('nftables.keepLearnedEvents(true)');
    k.log.splice(0);

    await daemon.migrate('ebpf');
    const at = (entry: string): number => k.log.indexOf(entry);
    expect(at('ebpf.keepLearnedEvents(true)')).toBeGreaterThanOrEqual(0);
    // on before the new dataplane writes its first table, off only after the mirror is gone
    expect(at('ebpf.keepLearnedEvents(true)')).toBeLessThan(at('ebpf.install'));
    expect(at('nftables.remove')).toBeGreaterThan(at('ebpf.install'));
    expect(at('ebpf.keepLearnedEvents(false)')).toBeGreaterThan(at('nftables.remove'));
    expect(k.log.filter((entry) => entry.includes('keepLearnedEvents'))).toEqual(['ebpf.keepLearnedEvents(true)', 'ebpf.keepLearnedEvents(false)']);

    // Onwards from a dataplane that reads no events: nothing to keep.
    k.log.splice(0);
    await daemon.migrate('iptables');
    expect(k.log.filter((entry) => entry.includes('keepLearnedEvents'))).toEqual([]);
  });

  it('a failed install of the new dataplane leaves the old one in force, untouched', async () => {
    tree = await configTree({ dataplane: 'iptables' });
    const { t, k } = setup((k) =>
      k.drivers.map((registration) =>
        registration.kind !== 'ebpf'
          ? registration
          : {
              kind: 'ebpf',
              builtFrom: [],
              create: () => {
                const fake = new KernelFake('ebpf', k.byKind.get('ebpf') as FakeKernel, k.log);
                fake.install = async () => {
                  k.log.push('ebpf.install(fails)');
                  throw new Error('verifier said no');
                };
                return fake;
              },
            },
      ),
    );
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    k.log.splice(0);
    await expect(daemon.migrate('ebpf')).rejects.toThrow('verifier said no');
    expect(k.log).not.toContain('iptables.remove');
    expect(daemon.kind).toBe('iptables');
    expect(k.byKind.get('iptables')?.installed).toBeDefined();
  });

  it('a restart with a different dataplane: migrates from the recorded one, make before break', async () => {
    tree = await configTree({ dataplane: 'iptables' });
    const { t, k } = setup();
    const first = daemonFor(t, tree.configPath);
    await first.start();
    const setId = setIdOf(k, 'iptables');
    const now = t.clock.now();
    await first.stop();
    // The parser keeps learning while the agent is stopped: the kernel holds more than the file.
    k.byKind.get('iptables')?.learned.record({ setId, family: 4, address: '198.18.20.7', expiresAt: now + 60_000 });
    await setDataplane('ebpf');
    k.log.splice(0);

    const second = daemonFor(t, tree.configPath);
    await second.start();
    expect(k.log).toEqual([
      'ebpf.install',
      'ebpf.exportLearned',
      'iptables.exportLearned',
      'ebpf.importLearned(1)',
      'iptables.remove',
      'iptables.close',
    ]);
    expect(k.byKind.get('ebpf')?.learned.has(setId, '198.18.20.7')).toBe(true);
    expect(second.migrations).toEqual([expect.objectContaining({ from: 'iptables', to: 'ebpf', imported: 1 })]);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'migrated', from: 'iptables', to: 'ebpf' }));
    const marker = JSON.parse(await readFile(markerPathFor(tree.statePath), 'utf8')) as { dataplane: string };
    expect(marker.dataplane).toBe('ebpf');
  });

  it('a restart with another explicit iptables backend migrates legacy → nft the same way', async () => {
    tree = await configTree({ dataplane: 'iptables' });
    await tree.write('dnsplane.yaml', `${await readFile(tree.configPath, 'utf8')}iptables: { backend: legacy }\n`);
    const { t, k } = setup();
    const first = daemonFor(t, tree.configPath);
    await first.start();
    const legacy = k.byKind.get('iptables-legacy' as DataplaneKind) as FakeKernel;
    const setId = legacy.installed?.domainSets[0]?.id ?? 0;
    legacy.learned.record({ setId, family: 4, address: '198.18.20.9', expiresAt: t.clock.now() + 60_000 });
    await first.stop();
    await tree.write('dnsplane.yaml', (await readFile(tree.configPath, 'utf8')).replace('backend: legacy', 'backend: nft'));
    k.log.splice(0);
    const second = daemonFor(t, tree.configPath);
    await second.start();
    expect(k.log).toEqual([
      'iptables-nft.install',
      'iptables-nft.exportLearned',
      'iptables-legacy.exportLearned',
      'iptables-nft.importLearned(1)',
      'iptables-legacy.remove',
      'iptables-legacy.close',
    ]);
    const marker = JSON.parse(await readFile(markerPathFor(tree.statePath), 'utf8')) as { dataplane: string; iptablesBackend: string };
    expect(marker).toMatchObject({ dataplane: 'iptables', iptablesBackend: 'nft' });
  });

  it('a restart with another nftables.table installs the new table, then deletes the old one alone (tc programs and pins are shared)', async () => {
    tree = await configTree();
    let environment: TestEnvironment | undefined;
    const k = kernels({ now: () => environment?.clock.now() ?? 0 });
    const t = testEnvironment({
      drivers: k.drivers,
      ...noWatch,
      retireNftablesTable: async (table) => void k.log.push(`retire table inet ${table}`),
    });
    environment = t;
    const first = daemonFor(t, tree.configPath);
    await first.start();
    await first.stop();
    expect(JSON.parse(await readFile(markerPathFor(tree.statePath), 'utf8'))).toMatchObject({ dataplane: 'nftables', nftablesTable: 'dnsplane' });
    // The same table again: nothing retired.
    k.log.splice(0);
    const same = daemonFor(t, tree.configPath);
    await same.start();
    await same.stop();
    expect(k.log.filter((line) => line.startsWith('retire'))).toEqual([]);
    await tree.write('dnsplane.yaml', `${await readFile(tree.configPath, 'utf8')}nftables: { table: dnsplane_next }\n`);
    k.log.splice(0);
    const second = daemonFor(t, tree.configPath);
    await second.start();
    expect(k.log).toEqual(['nftables.install', 'nftables.exportLearned', 'nftables.importLearned(0)', 'retire table inet dnsplane']);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'old_table_removed', table: 'dnsplane' }));
    expect(JSON.parse(await readFile(markerPathFor(tree.statePath), 'utf8'))).toMatchObject({ dataplane: 'nftables', nftablesTable: 'dnsplane_next' });
  });

  it('a restart of the same dataplane under another bpf.pinRoot removes the old pin folder after the install; a migration builds the old dataplane with it', async () => {
    tree = await configTree({ dataplane: 'ebpf' });
    let environment: TestEnvironment | undefined;
    const k = kernels({ now: () => environment?.clock.now() ?? 0 });
    const built: string[] = [];
    const t = testEnvironment({
      drivers: k.drivers.map((registration) => ({
        ...registration,
        create: (context: DriverContext) => (built.push(`${registration.kind} ${context.config.bpf.pinRoot}`), registration.create(context)),
      })),
      ...noWatch,
      retirePinRoot: (pinRoot) => void k.log.push(`retire pins ${pinRoot}`),
    });
    environment = t;
    const config = await readFile(tree.configPath, 'utf8');
    const first = daemonFor(t, tree.configPath);
    await first.start();
    await first.stop();
    expect(JSON.parse(await readFile(markerPathFor(tree.statePath), 'utf8'))).toMatchObject({ dataplane: 'ebpf', pinRoot: '/sys/fs/bpf/dnsplane' });
    await tree.write('dnsplane.yaml', `${config}bpf: { pinRoot: /sys/fs/bpf/dnsplane_b }\n`);
    k.log.splice(0);
    const second = daemonFor(t, tree.configPath);
    await second.start();
    await second.stop();
    expect(k.log.slice(0, 4)).toEqual(['ebpf.install', 'ebpf.exportLearned', 'ebpf.importLearned(0)', 'retire pins /sys/fs/bpf/dnsplane']);
    // Another dataplane under yet another folder: the old one is built with its own folder (its remove() takes it).
    await tree.write('dnsplane.yaml', `${config.replace('dataplane: ebpf', 'dataplane: nftables')}bpf: { pinRoot: /sys/fs/bpf/dnsplane_c }\n`);
    k.log.splice(0);
    built.splice(0);
    const third = daemonFor(t, tree.configPath);
    await third.start();
    expect(built).toEqual(['nftables /sys/fs/bpf/dnsplane_c', 'ebpf /sys/fs/bpf/dnsplane_b']);
    expect(k.log).toContain('ebpf.remove');
    expect(k.log.filter((line) => line.startsWith('retire'))).toEqual([]);
  });
});

describe('state across restarts', () => {
  it('start installs first, then imports the union of the kernel and the file; expired and unknown sets dropped; nothing removed', async () => {
    tree = await configTree();
    const { t, k } = setup();
    const first = daemonFor(t, tree.configPath);
    await first.start();
    const setId = setIdOf(k, 'nftables');
    const now = t.clock.now();
    const kernel = k.byKind.get('nftables') as FakeKernel;
    kernel.learned.record({ setId, family: 4, address: '198.18.20.1', expiresAt: now + 60_000, name: 'api.example.test' });
    kernel.learned.record({ setId, family: 4, address: '198.18.20.2', expiresAt: now + 5_000 });
    await first.stop();
    // The kernel lost one entry the file has (e.g. the maps were recreated) and learned another.
    kernel.learned.clear();
    kernel.learned.record({ setId, family: 4, address: '198.18.20.3', expiresAt: now + 120_000 });
    t.clock.advance(10_000);
    k.log.splice(0);

    const second = daemonFor(t, tree.configPath);
    await second.start();
    expect(k.log).toEqual(['nftables.install', 'nftables.exportLearned', 'nftables.importLearned(2)']);
    expect(kernel.learned.entries().map((e) => [e.address, e.name])).toEqual([
      ['198.18.20.1', 'api.example.test'],
      ['198.18.20.3', undefined],
    ]);
    expect((await second.status()).stateFile).toMatchObject({ path: tree.statePath, loaded: 2 });
  });

  it('keeps the file bounded: beyond the cap the soonest-expiring entries are dropped', async () => {
    tree = await configTree();
    const { t, k } = setup();
    const daemon = daemonFor(t, tree.configPath, { stateMaxEntries: 3 });
    await daemon.start();
    const setId = setIdOf(k, 'nftables');
    const now = t.clock.now();
    for (let i = 1; i <= 5; i++) {
      k.byKind.get('nftables')?.learned.record({ setId, family: 4, address: `198.18.30.${i}`, expiresAt: now + (10 - i) * 1000 });
    }
    expect(await daemon.persist()).toBe(3);
    const saved = JSON.parse(await readFile(tree.statePath, 'utf8')) as { version: number; entries: Array<{ address: string }> };
    expect(saved.version).toBe(1);
    expect(saved.entries.map((e) => e.address)).toEqual(['198.18.30.1', '198.18.30.2', '198.18.30.3']);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'state_capped', dropped: 2, max: 3 }));
  });

  it('boundEntries keeps the latest-expiring entries in their order', () => {
    const e = (address: string, expiresAt: number): LearnedEntry => ({ setId: 1, family: 4, address, expiresAt });
    expect(boundEntries([e('a', 5), e('b', 1), e('c', 9), e('d', 3)], 2)).toEqual([e('a', 5), e('c', 9)]);
    expect(boundEntries([e('a', 5)], 2)).toEqual([e('a', 5)]);
  });

  it.each([
    ['not JSON', '{"version": 1, "entr'],
    ['a foreign document', '{"kind": "Policy", "metadata": {"name": "x"}}'],
    ['a future version', '{"version": 99, "savedAt": 0, "entries": []}'],
    ['a bad entry', '{"version": 1, "savedAt": 0, "entries": [{"setId": 1, "family": 4, "address": "fd00::1", "expiresAt": 1}]}'],
  ])('a state file that is %s is reported, set aside as .corrupt-<time>, never fatal', async (_what, text) => {
    tree = await configTree();
    await tree.write('state/state.json', text);
    const { t, k } = setup();
    const daemon = daemonFor(t, tree.configPath, { socketPath: tree.socketPath });
    await daemon.start();
    expect(k.byKind.get('nftables')?.installed).toBeDefined();
    const aside = readdirSync(dirname(tree.statePath)).filter((f) => f.startsWith(`${basename(tree?.statePath ?? '')}.corrupt-`));
    expect(aside).toHaveLength(1);
    expect(await readFile(`${dirname(tree.statePath)}/${aside[0] ?? ''}`, 'utf8')).toBe(text);
    expect(t.logs).toContainEqual(expect.objectContaining({ event: 'state_file_corrupt', path: tree.statePath }));
    const status = await fetchStatus(tree.socketPath);
    expect(status.stateFile?.problem).toContain(tree.statePath);
    expect(status.stateFile?.setAside).toMatch(/state\.json\.corrupt-\d{4}-\d\d-\d\dT/);
    // The next save writes a good file again.
    await daemon.persist();
    expect(JSON.parse(await readFile(tree.statePath, 'utf8'))).toMatchObject({ version: 1 });
  });
});

describe('the CLI: status --learned, migrate, uninstall', () => {
  it('status --learned lists entries with expiries; migrate --to switches over the socket', async () => {
    tree = await configTree({ dataplane: 'iptables' });
    const { t, k } = setup();
    const exit = main(['run', '-c', tree.configPath, '--socket', tree.socketPath], t.environment);
    await waitFor(() => existsSync(tree?.socketPath ?? '') && k.byKind.get('iptables')?.installed !== undefined, 'the daemon to start');
    const setId = setIdOf(k, 'iptables');
    const expiresAt = t.clock.now() + 60_000;
    k.byKind.get('iptables')?.learned.record({ setId, family: 4, address: '198.18.20.1', expiresAt, name: 'api.example.test' });

    const status = testEnvironment();
    expect(await main(['status', '--learned', '--socket', tree.socketPath], status.environment)).toBe(0);
    expect(status.stdout()).toContain(`learned entries:\n  set ${setId} 198.18.20.1 until ${new Date(expiresAt).toISOString()} (api.example.test)\n`);

    const migrate = testEnvironment();
    expect(await main(['migrate', '--to', 'nftables', '--socket', tree.socketPath], migrate.environment)).toBe(0);
    expect(migrate.stdout()).toMatch(/^migrated from iptables to nftables at .*; 1 learned entry carried over\n$/);
    const json = testEnvironment();
    expect(await main(['status', '--json', '--socket', tree.socketPath], json.environment)).toBe(0);
    expect(JSON.parse(json.stdout())).toMatchObject({ dataplane: 'nftables', configuredDataplane: 'iptables', learned: 1, migrations: [{ from: 'iptables', to: 'nftables' }] });

    const usage = testEnvironment();
    expect(await main(['migrate', '--socket', tree.socketPath], usage.environment)).toBe(2);
    expect(usage.stderr()).toContain('--to: needs a dataplane');

    t.signals.emit('SIGTERM');
    expect(await exit).toBe(0);
  });

  it('uninstall removes every registered dataplane (iptables with both backends), sweeps and deletes the state', async () => {
    tree = await configTree();
    const { t, k } = setup();
    const daemon = daemonFor(t, tree.configPath);
    await daemon.start();
    await daemon.stop();
    expect(existsSync(tree.statePath)).toBe(true);
    const calls: string[] = [];
    const runner: ProcessRunner = {
      run: async (command, args): Promise<ProcessResult> => {
        calls.push([command, ...args].join(' '));
        if (command === 'ip') return { code: 0, stdout: '[{"ifname":"lo"},{"ifname":"veth0"}]', stderr: '' };
        if (command === 'tc' && args.join(' ') === '-j filter show dev veth0 ingress') {
          return { code: 0, stdout: '[{"pref":49,"kind":"bpf"},{"pref":49,"kind":"bpf","options":{"handle":"0x1","bpf_name":"dnsp_parser_tc","prog":{"id":7,"name":"dnsp_parser_tc"}}},{"pref":50,"kind":"bpf","options":{"handle":"0x1","prog":{"id":8,"name":"someone_else"}}}]', stderr: '' };
        }
        if (command === 'ipset') return { code: 0, stdout: 'dnsplane_old\nother\n', stderr: '' };
        if (command === 'bpftool') return { code: 0, stdout: '[]', stderr: '' };
        return { code: command === 'tc' && args[2] === 'show' ? 2 : 0, stdout: '', stderr: '' };
      },
    };
    const u = testEnvironment({ drivers: k.drivers, clock: t.clock, runner, ...noWatch });
    k.log.splice(0);
    expect(await main(['uninstall', '-c', tree.configPath, '--socket', tree.socketPath], u.environment), u.stdout() + u.stderr()).toBe(0);
    expect(k.log.filter((l) => l.endsWith('.remove'))).toEqual(['nftables.remove', 'iptables-legacy.remove', 'iptables-nft.remove', 'ebpf.remove']);
    expect(u.stdout()).toContain('ok     remove iptables (legacy)');
    expect(u.stdout()).toContain('ok     remove iptables (nft)');
    expect(calls).toContain('tc filter del dev veth0 ingress pref 49 handle 0x1 bpf');
    expect(calls.some((c) => c.includes('pref 50'))).toBe(false); // not ours
    expect(calls.some((c) => c.includes('qdisc del'))).toBe(false); // someone else's filter is left
    expect(calls).toContain('ipset destroy dnsplane_old');
    expect(existsSync(tree.statePath)).toBe(false);
    expect(existsSync(markerPathFor(tree.statePath))).toBe(false);
  });
});
