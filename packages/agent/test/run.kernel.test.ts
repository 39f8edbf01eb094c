// `dnsplane run` as a real process with the real nftables driver, inside a network namespace
// created for this test (so the table it programs is isolated and goes away with the netns),
// with a unique bpf.pinRoot. The daemon is started like the lab starts its agent: nsenter into
// the netns, then a private mount namespace with a fresh sysfs (so /sys/class/net shows the
// netns' interfaces) and the host's bpffs moved back on /sys/fs/bpf (`ip netns exec` would hide it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configTree, waitFor, WEB_POLICY, type ConfigTree } from './helpers.js';

const BIN = fileURLToPath(new URL('../bin/dnsplane.js', import.meta.url));
const netns = `dnsplane-agent-${randomBytes(4).toString('hex')}`;
const pinRoot = `/sys/fs/bpf/dnsplane-t${randomBytes(4).toString('hex')}`;
/** The folder of the second run (bpf.pinRoot changed between the runs). */
const nextPinRoot = `${pinRoot}-next`;
const LAUNCH = [
  'keep=$(mktemp -d /tmp/dnsplane-bpffs.XXXXXX) && mount --bind /sys/fs/bpf "$keep" || exit 125',
  'mount -t sysfs sysfs /sys || exit 125',
  'mount --move "$keep" /sys/fs/bpf && rmdir "$keep" || exit 125',
  'exec "$@"',
].join('\n');
let tree: ConfigTree | undefined;
let daemon: ChildProcess | undefined;
let daemonLog = '';
let exitCode: number | null | undefined;

function inNetns(command: string, args: readonly string[]): { code: number; stdout: string; stderr: string } {
  const result = spawnSync('ip', ['netns', 'exec', netns, command, ...args], { encoding: 'utf8' });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

function nftTable(): string | undefined {
  const result = inNetns('nft', ['list', 'table', 'inet', 'dnsplane']);
  return result.code === 0 ? result.stdout : undefined;
}

/** The child processes of `pid` (its main thread's). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function readCommandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** The interfaces whose tc ingress holds the parser's filter (pref 209). */
function parserOn(): string[] {
  return ['dnsp0', 'dnsp1'].filter((name) => /pref 209 bpf/.test(inNetns('tc', ['filter', 'show', 'dev', name, 'ingress']).stdout));
}

function status(): Record<string, unknown> {
  const result = spawnSync(process.execPath, [BIN, 'status', '--json', '--socket', tree?.socketPath ?? ''], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`dnsplane status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

beforeAll(async () => {
  const added = spawnSync('ip', ['netns', 'add', netns], { encoding: 'utf8' });
  if (added.status !== 0) throw new Error(`ip netns add failed: ${added.stderr}`);
  // Two interfaces for the parser to watch (nothing is sent through them).
  const pair = spawnSync('ip', ['-n', netns, 'link', 'add', 'dnsp0', 'type', 'veth', 'peer', 'name', 'dnsp1'], { encoding: 'utf8' });
  if (pair.status !== 0) throw new Error(`ip link add failed: ${pair.stderr}`);
  tree = await configTree();
  await tree.write('dnsplane.yaml', `${await readFile(tree.configPath, 'utf8')}bpf: { pinRoot: ${pinRoot} }\ndriftCheckSeconds: 3600\n`);
});

afterAll(async () => {
  try {
    if (daemon && exitCode === undefined && daemon.pid !== undefined) {
      daemon.kill('SIGKILL');
    }
  } finally {
    spawnSync('ip', ['netns', 'del', netns]);
    rmSync(pinRoot, { recursive: true, force: true });
    rmSync(nextPinRoot, { recursive: true, force: true });
    await tree?.cleanup();
  }
});

describe('dnsplane run (real nftables, own netns)', () => {
  it('installs, re-applies on change, refuses a change that needs a restart, keeps the last good state, reloads on SIGHUP, stops on SIGTERM leaving enforcement', async () => {
    if (!tree) throw new Error('no config tree');
    const socketPath = tree.socketPath;
    daemon = startDaemon();

    await waitFor(() => daemonLog.includes('"event":"applied"') || exitCode !== undefined, 'the first install', 20_000);
    expect(exitCode, daemonLog).toBeUndefined();
    expect(existsSync(socketPath)).toBe(true);
    const first = nftTable();
    expect(first, daemonLog).toBeDefined();
    expect(first).toContain('web-egress');
    const report = status();
    expect(report).toMatchObject({ dataplane: 'nftables', rejected: [], watches: { interfaces: 'running', removals: 'running' } });
    expect((report['objects'] as string[]).length).toBeGreaterThan(0);

    // Someone deletes the table (as `nft flush ruleset` would): `nft monitor` tells the daemon at
    // once (the periodic check is an hour away here), and the drift check installs it again.
    expect(inNetns('nft', ['delete', 'table', 'inet', 'dnsplane']).code).toBe(0);
    await waitFor(() => nftTable() === first || exitCode !== undefined, 'the table back after its deletion', 10_000);
    expect(exitCode, daemonLog).toBeUndefined();
    // The table can be back before the daemon's log lines reach this process (the checks above
    // block the event loop that reads its stderr): wait for them.
    await waitFor(() => daemonLog.includes('"event":"repaired"'), 'the repair logged', 10_000);
    expect(daemonLog).toContain('"event":"removal_seen"');
    expect(daemonLog).toMatch(/"event":"drift"[^\n]*"trigger":"kernel_event"[^\n]*"missing":\["nft table inet dnsplane"\]/);

    // The monitor is a child process that can die (killed, out of memory): the daemon starts
    // the watch again (after 5 s) and checks at once what it may have missed — here a table
    // deleted while no monitor ran.
    const monitor = childrenOf(daemon.pid ?? 0).find((pid) => readCommandLine(pid).startsWith('nft monitor destroy tables'));
    expect(monitor, `the daemon's children: ${childrenOf(daemon.pid ?? 0).map(readCommandLine).join('; ')}`).toBeDefined();
    const logBeforeKill = daemonLog.length;
    process.kill(monitor ?? 0, 'SIGKILL');
    await waitFor(() => daemonLog.includes('"event":"removal_watch_failed"'), 'the failed watch logged', 10_000);
    // Until the restart (5 s later) status says `retrying`; read after it (a very slow machine),
    // `running` again, and then the restart's log line must come.
    const watches = status()['watches'] as { interfaces: string; removals: string };
    expect(watches.interfaces).toBe('running');
    if (watches.removals === 'running') await waitFor(() => daemonLog.includes('"event":"removal_watch_restarted"'), 'the restart status saw', 10_000);
    else expect(watches.removals).toBe('retrying');
    expect(inNetns('nft', ['delete', 'table', 'inet', 'dnsplane']).code).toBe(0);
    await waitFor(() => nftTable() === first || exitCode !== undefined, 'the table back after the watch restarted', 20_000);
    await waitFor(() => daemonLog.includes('"event":"removal_watch_restarted"'), 'the restart logged', 10_000);
    await waitFor(() => /"event":"repaired"/.test(daemonLog.slice(logBeforeKill)), 'the repair logged', 10_000);
    // Deleted while no monitor ran, the restart's check finds it; deleted after the restart (a
    // very slow machine), the restarted monitor hears it.
    expect(daemonLog.slice(logBeforeKill)).toMatch(/"event":"drift"[^\n]*"trigger":"(watch_restarted|kernel_event)"/);

    // A new policy file: re-applied into the kernel.
    await tree.write('policies/batch.yaml', WEB_POLICY.replace('web-egress', 'batch-egress').replace('app == "web"', 'app == "batch"'));
    await waitFor(() => nftTable()?.includes('batch-egress') === true, 'the new policy in the nft table', 10_000);

    // A setting the running driver was built with (its table's name): rejected with the field
    // named, nothing programmed under the new name; the old config back clears it.
    const config = await readFile(tree.configPath, 'utf8');
    await tree.write('dnsplane.yaml', `${config}nftables: { table: dnsplane_next }\n`);
    await waitFor(() => (status()['rejected'] as string[]).length > 0, 'the table rename to be rejected', 10_000);
    expect((status()['rejected'] as string[])[0]).toMatch(/dnsplane\.yaml: nftables\.table: the running nftables dataplane was built with "dnsplane"; changing it to "dnsplane_next" needs a restart/);
    expect(inNetns('nft', ['list', 'table', 'inet', 'dnsplane_next']).code).not.toBe(0);
    expect(nftTable()).toContain('batch-egress');
    await tree.write('dnsplane.yaml', config);
    await waitFor(() => (status()['rejected'] as string[]).length === 0, 'the old config accepted again', 10_000);

    // More trusted servers than the kernel parser holds: rejected when read, before any rule of
    // the same edit goes in (the kernel side of an install runs after its rules).
    const servers = Array.from({ length: 17 }, (_, i) => `"198.18.0.${i + 1}:53"`).join(', ');
    await tree.write('dnsplane.yaml', config.replace('dns: { trustedServers: ["198.18.0.10:53"] }', `dns: { trustedServers: [${servers}] }`));
    await tree.write('policies/web.yaml', WEB_POLICY.replace('web-egress', 'web-egress-next'));
    await waitFor(() => (status()['rejected'] as string[]).length > 0, 'the 17 servers to be rejected', 10_000);
    expect((status()['rejected'] as string[])[0]).toMatch(/dnsplane\.yaml: dns\.trustedServers: the kernel parser holds at most 16 trusted servers/);
    expect(nftTable()).not.toContain('web-egress-next');
    await tree.write('policies/web.yaml', WEB_POLICY);
    await tree.write('dnsplane.yaml', config);
    await waitFor(() => (status()['rejected'] as string[]).length === 0, 'the old config accepted again', 10_000);

    // Where the parser watches DNS is taken live: every interface but lo, then dnsp1 alone.
    expect(parserOn()).toEqual(['dnsp0', 'dnsp1']);
    await tree.write('dnsplane.yaml', config.replace('dns: { trustedServers: ["198.18.0.10:53"] }', 'dns: { trustedServers: ["198.18.0.10:53"], interfaces: [dnsp1] }'));
    await waitFor(() => parserOn().join() === 'dnsp1', 'the parser on dnsp1 alone', 10_000);
    await tree.write('dnsplane.yaml', config);
    await waitFor(() => parserOn().length === 2, 'the parser back on both', 10_000);

    // An invalid change: rejected, the table stays as it was.
    const before = nftTable();
    await tree.write('policies/batch.yaml', 'kind: Policy\nmetadata: { name: batch-egress }\nspec: { egress: [{ action: Maybe }] }\n');
    await waitFor(() => (status()['rejected'] as string[]).length > 0, 'the change to be rejected', 10_000);
    expect((status()['rejected'] as string[])[0]).toMatch(/batch\.yaml#0: spec\.egress\[0\]\.action: /);
    expect(nftTable()).toBe(before);

    // SIGHUP reads everything again (the invalid file is still there: rejected again) and the
    // daemon keeps running — without a handler the signal would have ended the process.
    daemon.kill('SIGHUP');
    await waitFor(() => daemonLog.includes('"event":"reloaded"') || exitCode !== undefined, 'the reload on SIGHUP', 10_000);
    expect(exitCode, daemonLog).toBeUndefined();
    expect(daemonLog).toMatch(/"event":"reloaded"[^\n]*"outcome":"rejected"/);
    expect(status()).toMatchObject({ dataplane: 'nftables' });
    expect(nftTable()).toBe(before);

    daemon.kill('SIGTERM');
    await waitFor(() => exitCode !== undefined, 'the daemon to exit', 10_000);
    expect(exitCode, daemonLog).toBe(0);
    expect(daemonLog).toContain('"event":"stopped"');
    // Stopping never removes enforcement.
    expect(nftTable()).toBe(before);
    expect(existsSync(socketPath)).toBe(false);
    expect(existsSync(tree.statePath)).toBe(true);
  });

  it('after a restart under another nftables.table and bpf.pinRoot, the new table enforces and the old table and pins are gone', async () => {
    if (!tree || exitCode !== 0) throw new Error('the first run did not end cleanly');
    expect(existsSync(pinRoot)).toBe(true);
    const config = await readFile(tree.configPath, 'utf8');
    await tree.write('dnsplane.yaml', `${config.replace(pinRoot, nextPinRoot)}nftables: { table: dnsplane_next }\n`);
    // The first run left an invalid policy file behind (its last good state was before it).
    await tree.write('policies/batch.yaml', WEB_POLICY.replace('web-egress', 'batch-egress').replace('app == "web"', 'app == "batch"'));
    daemonLog = '';
    exitCode = undefined;
    daemon = startDaemon();
    await waitFor(() => daemonLog.includes('"event":"old_table_removed"') || exitCode !== undefined, 'the old table retired', 20_000);
    expect(exitCode, daemonLog).toBeUndefined();
    expect(inNetns('nft', ['list', 'table', 'inet', 'dnsplane_next']).stdout).toContain('batch-egress');
    expect(nftTable()).toBeUndefined();
    await waitFor(() => daemonLog.includes('"event":"old_pins_removed"'), 'the old pins removed', 10_000);
    expect(existsSync(pinRoot)).toBe(false);
    expect(existsSync(nextPinRoot)).toBe(true);
    // The parser on the interfaces is the new run's (its pins), not a leftover of the old folder.
    expect(parserOn()).toEqual(['dnsp0', 'dnsp1']);
    daemon.kill('SIGTERM');
    await waitFor(() => exitCode !== undefined, 'the daemon to exit', 10_000);
    expect(exitCode, daemonLog).toBe(0);
  });
});

/** `dnsplane run` in the test's netns (see LAUNCH), its output into daemonLog. */
function startDaemon(): ChildProcess {
  if (!tree) throw new Error('no config tree');
  const child = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', LAUNCH, 'sh', process.execPath, BIN, 'run', '-c', tree.configPath, '--socket', tree.socketPath, '--log-level', 'debug'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (daemonLog += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (daemonLog += chunk));
  child.on('exit', (code) => (exitCode = code));
  return child;
}
