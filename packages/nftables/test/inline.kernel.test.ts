// The nftables dataplane's inline guarantee end to end in a lab: the driver runs in the lab's
// node namespace (test/scripts/run-driver.ts, as the agent would), the parser learns from
// dnsmasq's answers on tc, the membership marker marks the workload's first SYN, and the
// mirror fills the nft sets. Real resolver, real TCP, real kernel.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEARNED_EVENTS_DRAIN_INTERVAL_MS } from '@dnsplane/bpf-parser';
import type { LabProcess } from '../../../test/lab/lab.js';
import { useLab } from '../../../test/lab/vitest-lab.js';
import { expectEveryFirstSynPasses } from '../../../test/lab/first-syn.js';
import { waitFor } from '../../../test/lab/wait.js';
import { removeDriverLeftovers, writeLabConfig } from './scripts/lab-config.js';

const SCRIPT = fileURLToPath(new URL('./scripts/run-driver.ts', import.meta.url));
const suffix = randomBytes(4).toString('hex');
const TABLE = `dnsplane_t${suffix}`;
const PIN_ROOT = `/sys/fs/bpf/dnsplane-t${suffix}`;


describe('nftables inline membership in the lab', () => {
  const lab = useLab({ clients: 2, freshNames: 400 });
  let dir = '';
  let config = '';
  let driver: LabProcess | undefined;

  const startDriver = async (): Promise<LabProcess> => {
    const process = lab().startAgentProcess(['npx', 'tsx', SCRIPT, 'install', config], { name: `nft-driver-${Date.now()}` });
    await process.waitForOutput(/"event":"installed"/, 60_000);
    return process;
  };
  const nft = async (...args: string[]): Promise<string> => {
    const result = await lab().exec('node', ['nft', ...args]);
    if (result.code !== 0) throw new Error(`nft ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  /** The learned IPv4 set of the fresh names' domain set: its name and listing. */
  const freshSet = async (): Promise<string> => {
    const table = await nft('list', 'table', 'inet', TABLE);
    const names = [...table.matchAll(/set (ds_[0-9a-f]+_v4) /g)].map((m) => m[1] ?? '');
    const listings = await Promise.all(names.map((n) => nft('list', 'set', 'inet', TABLE, n)));
    return listings.find((l) => l.includes('198.19.64.')) ?? listings.join('\n');
  };
  /**
   * With no driver running, `from` resolves a fresh name and its first SYN passes on the mark
   * alone: nothing mirrored it. Returns the fresh IPv4 address.
   */
  const expectFirstSynOnMarkAlone = async (from: string): Promise<string> => {
    const [fresh] = lab().allocateFresh(1);
    if (fresh === undefined) throw new Error('no fresh name');
    const trial = await lab().connectAfterResolve(from, fresh.name, 80);
    expect(trial.connected).toBe(true);
    expect(trial.synRetransmitted).toBe(false);
    expect(await freshSet()).not.toContain(`${fresh.ipv4} `);
    return fresh.ipv4;
  };

  beforeAll(async () => {
    const l = lab();
    dir = await mkdtemp(join(tmpdir(), 'dnsplane-nft-inline-'));
    config = await writeLabConfig(l, dir, { table: TABLE, pinRoot: PIN_ROOT });
    driver = await startDriver();
  }, 90_000);

  // Whatever happened above: no table, no pins left behind.
  afterAll(() => removeDriverLeftovers(lab(), driver, { table: TABLE, pinRoot: PIN_ROOT, dir }), 60_000);

  it('200 fresh allowed names: every first SYN passes (zero SYN retransmits)', async () => {
    const trials = lab().allocateFresh(200).map((f) => ({ name: f.name, port: 80 }));
    await expectEveryFirstSynPasses(lab(), 'client1', trials);
  }, 60_000);

  it('IPv6 too: 20 fresh names by AAAA connect at once', async () => {
    const trials = lab().allocateFresh(20).map((f) => ({ name: f.name, port: 80, type: 'AAAA' as const }));
    const batch = await lab().connectAfterResolveBatch('client1', trials);
    expect(batch.trials.every((t) => t.address?.startsWith('fd00:19:') === true)).toBe(true);
    expect(batch.trials.filter((t) => !t.connected || t.synRetransmitted)).toEqual([]);
    expect(batch.counters.synRetransmits).toBe(0);
  }, 30_000);

  it('a name the policy does not allow is denied', async () => {
    const result = await lab().connectAfterResolve('client1', 'blocked.lab.test', 80, { connectTimeoutMs: 1500 });
    expect(result.addresses.length).toBeGreaterThan(0);
    expect(result.connected).toBe(false);
  }, 20_000);

  it('nft list set shows the learned addresses with expiries (the mirror), within its slow period for a marked set', async () => {
    const [fresh] = lab().allocateFresh(1);
    if (fresh === undefined) throw new Error('no fresh name');
    const trial = await lab().connectAfterResolve('client1', fresh.name, 80);
    expect(trial.connected).toBe(true);
    // The fresh names' set has a mark bit: its events do not wake the mirror, which reads them
    // on its timer (default period) — plus the nft write and our listing.
    const listing = await waitFor('the mirror to write the address', async () => {
      const text = await freshSet();
      // e.g. "198.19.64.1 timeout 1m10s expires 1m9s412ms" (TTL 60 + extraTTL 10)
      return new RegExp(`${fresh.ipv4.replaceAll('.', '\\.')} timeout [0-9hms]+ expires [0-9hms]+`).test(text) ? text : undefined;
    }, { timeoutMs: LEARNED_EVENTS_DRAIN_INTERVAL_MS + 1_000 }).catch(async (error: unknown) => {
      throw new Error(`${String(error)}\n${await freshSet()}\n${driver?.stdout().slice(-3000) ?? ''}`);
    });
    expect(listing).toMatch(/flags timeout/);
  }, 20_000);

  it('with the driver stopped, learning and enforcement go on; a restart syncs the nft set from the kernel maps', async () => {
    await driver?.stop();
    expect(existsSync(PIN_ROOT)).toBe(true);
    const address = await expectFirstSynOnMarkAlone('client1');
    expect((await lab().connectAfterResolve('client1', 'blocked.lab.test', 80, { connectTimeoutMs: 1500 })).connected).toBe(false);

    driver = await startDriver();
    await waitFor('the restarted driver to sync the address', async () =>
      (await freshSet()).includes(`${address} `) ? true : undefined, { timeoutMs: 5_000 });
  }, 90_000);

  it('a set the node\'s egress matches only through its nft set wakes the mirror: its address is there at once', async () => {
    // The same domain set, now also referenced by a host endpoint's egress (tc runs after
    // netfilter output there: no mark), and a mirror timer that never fires during the test.
    await driver?.stop();
    driver = undefined;
    config = await writeLabConfig(lab(), dir, { table: TABLE, pinRoot: PIN_ROOT, hostEndpoint: true, mirrorDrainIntervalMs: 60_000 });
    driver = await startDriver();
    expect(driver.stdout()).toMatch(/"mirror_only_endpoints":1/);
    for (const fresh of lab().allocateFresh(2)) {
      const trial = await lab().connectAfterResolve('client1', fresh.name, 80);
      expect(trial.connected).toBe(true);
      expect(trial.synRetransmitted).toBe(false);
      await waitFor('the woken mirror to write the address', async () => ((await freshSet()).includes(`${fresh.ipv4} `) ? true : undefined), {
        timeoutMs: 1_000,
      }).catch(async (error: unknown) => {
        throw new Error(`${String(error)}\n${await freshSet()}\n${driver?.stdout().slice(-3000) ?? ''}`);
      });
    }
  }, 90_000);

  it("the node's own TCP connects (host endpoint): every first SYN to a fresh address passes on the connect marker's mark; other names and ports stay denied", async () => {
    // the host endpoint of the test above is in force
    expect(driver?.stdout()).toMatch(/"host_connect_marked":1/);
    // IPv4 and IPv6 (cgroup/connect4 and connect6), interleaved
    const trials = lab()
      .allocateFresh(40)
      .map((f, i) => ({ name: f.name, port: 80, type: i % 4 === 3 ? ('AAAA' as const) : ('A' as const) }));
    await expectEveryFirstSynPasses(lab(), 'node', trials);
    const [fresh] = lab().allocateFresh(1);
    if (fresh === undefined) throw new Error('no fresh name');
    // the mark admits the set's rule only: port 8080 is not in it, blocked.lab.test in no set
    expect((await lab().connectAfterResolve('node', fresh.name, 8080, { connectTimeoutMs: 1500 })).connected).toBe(false);
    expect((await lab().connectAfterResolve('node', 'blocked.lab.test', 80, { connectTimeoutMs: 1500 })).connected).toBe(false);
  }, 90_000);

  it('with the driver stopped, the node\'s first SYN to a fresh address passes on the mark alone (nothing mirrored it)', async () => {
    await driver?.stop();
    driver = undefined;
    await expectFirstSynOnMarkAlone('node');
    driver = await startDriver();
  }, 90_000);

  it('remove() detaches every tc program it attached, deletes the table and the pin root', async () => {
    const hostInterface = lab().endpoints['client1']?.hostInterface ?? 'missing-client1';
    const filters = async (ifname: string, direction: string): Promise<string> =>
      (await lab().exec('node', ['tc', 'filter', 'show', 'dev', ifname, direction])).stdout;
    expect(await filters(hostInterface, 'ingress')).toMatch(/dnsplane_member/);
    expect(await filters(hostInterface, 'ingress')).toMatch(/dnsplane_parse/);
    // the connect marker's links (pinned under the pin root) go with it
    const links = await Promise.all(
      ['dnsp_host_connect4', 'dnsp_host_connect6'].map(async (pin) => {
        const shown = await lab().exec('node', ['bpftool', '-j', 'link', 'show', 'pinned', join(PIN_ROOT, pin)]);
        return (JSON.parse(shown.stdout) as { id: number }).id;
      }),
    );
    await driver?.stop();
    driver = undefined;
    const removal = lab().startAgentProcess(['npx', 'tsx', SCRIPT, 'remove', config], { name: 'nft-driver-remove' });
    await removal.waitForOutput(/"event":"removed"/, 30_000).finally(() => removal.stop());
    const interfaces = (await lab().exec('node', ['ls', '/sys/class/net'])).stdout.split(/\s+/).filter((n) => n !== '');
    expect(interfaces).toContain(hostInterface);
    for (const ifname of interfaces) {
      for (const direction of ['ingress', 'egress']) expect(await filters(ifname, direction)).not.toMatch(/dnsplane_/);
    }
    expect(existsSync(PIN_ROOT)).toBe(false);
    for (const id of links) expect((await lab().exec('node', ['bpftool', 'link', 'show', 'id', String(id)])).code).not.toBe(0);
    expect((await lab().exec('node', ['nft', 'list', 'table', 'inet', TABLE])).code).not.toBe(0);
  }, 60_000);
});
