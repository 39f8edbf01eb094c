// The driver on the real kernel through both executors (libnftables addon, nft binary).
// Every test owns uniquely named tables and deletes them, also when it fails. Only forward
// dispatch on interfaces that do not exist is installed in this namespace, so no traffic of
// the machine is affected.
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isKernelError, type DesiredState, type LearnedEntry } from '@dnsplane/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  JsonNftHandle,
  LibnftablesExecutor,
  NftCliExecutor,
  createNftablesDataplane,
  forwardGates,
  loadAddon,
  nftProcessRunner,
  silentLogger,
  type NftablesDataplane,
  type NftablesDataplaneOptions,
} from '@dnsplane/nftables';
import { baseState, githubSet, s3Set, webEgress } from './fixtures.js';
import { deleteTableIfPresent, nft, nftJson, setElements, tableExists, uniqueSuffix, waitFor } from './kernel-helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The fixture state with workload interfaces renamed to ones that do not exist, no host endpoint. */
function safeState(suffix: string, overrides: Partial<DesiredState> = {}): DesiredState {
  const state = baseState();
  return {
    ...state,
    endpoints: state.endpoints
      .filter((e) => !e.host)
      .map((e) => ({ ...e, interface: `dpx${suffix}${e.name.slice(0, 3)}` })),
    ...overrides,
  };
}

function newDataplane(
  executor: 'libnftables' | 'nft-cli',
  options: Omit<NftablesDataplaneOptions, 'tableName' | 'executor'> = {},
): { dataplane: NftablesDataplane; table: string; suffix: string } {
  const suffix = uniqueSuffix();
  const table = `dnsplane_t${suffix}`;
  const dataplane = createNftablesDataplane({ tableName: table, executor, ...options });
  cleanups.push(async () => {
    await dataplane.close();
    await deleteTableIfPresent('inet', table);
  });
  return { dataplane, table, suffix };
}

const learned = (address: string, expiresAt: number, setId = githubSet.id): LearnedEntry => ({
  setId,
  family: address.includes(':') ? 6 : 4,
  address,
  expiresAt,
});

async function ruleHandles(table: string): Promise<Record<string, number[]>> {
  const listing = await nftJson('list', 'table', 'inet', table);
  const byChain: Record<string, number[]> = {};
  for (const o of listing.nftables) {
    const rule = o['rule'] as { chain: string; handle: number } | undefined;
    if (rule !== undefined) (byChain[rule.chain] ??= []).push(rule.handle);
  }
  return byChain;
}

describe('render() on the real nft (check mode)', () => {
  it('nft -j -c -f accepts the whole document, host endpoints included', async () => {
    const { dataplane } = newDataplane('nft-cli');
    const dir = await mkdtemp(join(tmpdir(), 'dnsplane-render-'));
    try {
      const file = join(dir, 'doc.json');
      await writeFile(file, dataplane.render(baseState()).split('\n\n')[0] ?? '');
      await nft('-j', '-c', '-f', file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const executors = loadAddon() !== undefined ? (['libnftables', 'nft-cli'] as const) : (['nft-cli'] as const);

describe.each(executors)('nftables driver via %s', (executor) => {
  it('installs the table, and re-installing the same state changes nothing', async () => {
    const { dataplane, table, suffix } = newDataplane(executor);
    await dataplane.install(safeState(suffix));
    const text = await nft('list', 'table', 'inet', table);
    expect(text).toContain('ip daddr @ds_1a2b_v4 tcp dport 443 counter packets 0 bytes 0 accept');
    expect(text).toContain('ip6 daddr @ds_1a2b_v6 tcp dport 443 counter packets 0 bytes 0 accept');
    expect(text).toContain('type filter hook forward priority filter; policy accept;');
    expect(text).toContain(`iifname "dpx${suffix}web" jump ep_web_egress`);
    expect(text).toContain('log prefix "dnsplane web-egress egress 2: "');
    const before = await ruleHandles(table);
    await dataplane.install(safeState(suffix));
    expect(await ruleHandles(table)).toEqual(before);
  });

  it('re-applying with a changed policy replaces its rules and keeps learned elements', async () => {
    const { dataplane, table, suffix } = newDataplane(executor);
    await dataplane.install(safeState(suffix));
    const now = Date.now();
    await dataplane.addLearned([learned('198.18.1.1', now + 60_000), learned('fd00::1', now + 60_000), learned('198.18.2.2', now + 60_000, s3Set.id)]);
    const before = await ruleHandles(table);
    const changed = { ...webEgress, egress: [webEgress.egress![1]!, webEgress.egress![0]!] };
    await dataplane.install(safeState(suffix, { policies: [baseState().policies[0]!, changed] }));
    const after = await ruleHandles(table);
    expect(after['pol_web-egress_egress']).not.toEqual(before['pol_web-egress_egress']);
    expect(after['pol_base-ingress_ingress']).toEqual(before['pol_base-ingress_ingress']);
    expect((await setElements(table, 'ds_1a2b_v4')).map((e) => e.val)).toEqual(['198.18.1.1']);
    expect((await setElements(table, 'ds_1a2b_v6')).map((e) => e.val)).toEqual(['fd00::1']);
    expect((await setElements(table, 'ds_3c4d_v4')).map((e) => e.val)).toEqual(['198.18.2.2']);
    // dropping a domain set deletes its pair; the others keep their members
    const noGithub = { ...webEgress, egress: webEgress.egress!.slice(1) };
    await dataplane.install(safeState(suffix, { domainSets: [s3Set], policies: [baseState().policies[0]!, noGithub] }));
    // nft 1.0.6 lists the sets of every inet table here, not only of the one named
    const sets = (await nftJson('list', 'sets', 'table', 'inet', table)).nftables
      .map((o) => o['set'] as { name?: string; table?: string } | undefined)
      .filter((set) => set?.table === table)
      .map((set) => set?.name);
    expect(sets.sort()).toEqual(['ds_3c4d_v4', 'ds_3c4d_v6']);
    expect((await setElements(table, 'ds_3c4d_v4')).map((e) => e.val)).toEqual(['198.18.2.2']);
  });

  it('exports learned entries with their expiries and imports them elsewhere', async () => {
    const a = newDataplane(executor);
    const b = newDataplane(executor);
    await a.dataplane.install(safeState(a.suffix));
    await b.dataplane.install(safeState(b.suffix));
    const now = Date.now();
    await a.dataplane.addLearned([learned('198.18.3.3', now + 50_000), learned('fd00::3', now + 80_000, s3Set.id)]);
    const exported = await a.dataplane.exportLearned();
    expect(exported).toHaveLength(2);
    const v4 = exported.find((e) => e.address === '198.18.3.3');
    expect(v4?.setId).toBe(githubSet.id);
    expect(v4!.expiresAt).toBeGreaterThan(now + 45_000);
    expect(v4!.expiresAt).toBeLessThanOrEqual(Date.now() + 50_000);
    await b.dataplane.importLearned(exported);
    expect((await setElements(b.table, 'ds_3c4d_v6')).map((e) => e.val)).toEqual(['fd00::3']);
    const status = await b.dataplane.status();
    expect(status.learned).toBe(2);
    // b created its table and imported every element: a metrics scrape counts them unlisted
    expect(await b.dataplane.status({ detail: 'counters' })).toEqual(status);
    expect(status.objects).toContain(`nft set inet ${b.table} ds_3c4d_v6`);
  });
});

describe('element timeouts on the real kernel', () => {
  it('rounds timeouts up to whole seconds (never a permanent element)', async () => {
    const { dataplane, table, suffix } = newDataplane('libnftables');
    await dataplane.install(safeState(suffix));
    await dataplane.addLearned([learned('198.18.4.1', Date.now() + 1_500), learned('198.18.4.2', Date.now() + 10_200)]);
    const elements = await setElements(table, 'ds_1a2b_v4');
    const byVal = Object.fromEntries(elements.map((e) => [e.val, e.timeout]));
    expect(byVal).toEqual({ '198.18.4.1': 2, '198.18.4.2': 11 });
  });

  it('expired elements disappear', async () => {
    const { dataplane, table, suffix } = newDataplane('libnftables');
    await dataplane.install(safeState(suffix));
    await dataplane.addLearned([learned('198.18.4.3', Date.now() + 1_000), learned('198.18.4.4', Date.now() + 60_000)]);
    expect((await setElements(table, 'ds_1a2b_v4')).map((e) => e.val).sort()).toEqual(['198.18.4.3', '198.18.4.4']);
    await waitFor('198.18.4.3 to expire', async () => !(await setElements(table, 'ds_1a2b_v4')).some((e) => e.val === '198.18.4.3'), 5_000);
    expect((await setElements(table, 'ds_1a2b_v4')).map((e) => e.val)).toEqual(['198.18.4.4']);
  });

  it.each([
    { how: 'as the probe finds this kernel (≥ 6.12: one add with expires)', elementRefresh: 'probe', expected: 'update' },
    { how: 'by add + delete + add, as on kernels before 6.12', elementRefresh: 'replace', expected: 'replace' },
  ] as const)('refreshes an element to a later expiry even with the same timeout value, never to an earlier one — $how', async ({ elementRefresh, expected }) => {
    const chosen: unknown[] = [];
    const logger = { ...silentLogger, info: (object: object) => void chosen.push((object as { elementRefresh?: unknown }).elementRefresh) };
    const { dataplane, table, suffix } = newDataplane('libnftables', { elementRefresh, logger });
    await dataplane.install(safeState(suffix));
    const expires = async () => (await setElements(table, 'ds_1a2b_v4')).find((e) => e.val === '198.18.4.5')?.expires;
    await dataplane.addLearned([learned('198.18.4.5', Date.now() + 30_000)]);
    // let the kernel's countdown visibly move (condition wait, not a fixed sleep)
    await waitFor('the element to age', async () => ((await expires()) ?? 99) <= 28, 5_000);
    // an earlier expiry is ignored
    expect(await dataplane.addLearned([learned('198.18.4.5', Date.now() + 5_000)])).toMatchObject({ written: 0, unchanged: 1 });
    expect(await expires()).toBeGreaterThan(20);
    // a later expiry with the same timeout value (30 s): plain re-adding would keep the old one
    expect(await dataplane.addLearned([learned('198.18.4.5', Date.now() + 30_000)])).toMatchObject({ written: 1 });
    expect(await expires()).toBeGreaterThanOrEqual(29);
    expect((await setElements(table, 'ds_1a2b_v4')).find((e) => e.val === '198.18.4.5')?.timeout).toBe(30);
    if (elementRefresh === 'probe') expect(chosen.filter((c) => c !== undefined)).toEqual([expected]);
    // the probe's set is gone again
    expect((await nft('list', 'table', 'inet', table))).not.toContain('probe_element_refresh');
  });
});

describe('drift', () => {
  it('finds its table gone after someone deleted it (as `flush ruleset` does), and installing again puts it back', async () => {
    const { dataplane, table, suffix } = newDataplane('libnftables');
    expect(await dataplane.missingObjects()).toEqual([]); // nothing installed yet
    await dataplane.install(safeState(suffix));
    expect(await dataplane.missingObjects()).toEqual([]);
    const before = await nft('list', 'table', 'inet', table);
    await nft('delete', 'table', 'inet', table);
    expect(await dataplane.missingObjects()).toEqual([`nft table inet ${table}`]);
    await dataplane.install(safeState(suffix));
    expect(await dataplane.missingObjects()).toEqual([]);
    expect(await nft('list', 'table', 'inet', table)).toBe(before);
    // the driver knows the sets start empty again: a learned write goes in as a new element
    expect(await dataplane.addLearned([learned('198.18.4.9', Date.now() + 60_000)])).toMatchObject({ written: 1 });
    expect((await setElements(table, 'ds_1a2b_v4')).map((e) => e.val)).toEqual(['198.18.4.9']);
  });
});

describe('a restore of 100,000 entries', () => {
  it('lets a mirror write through between its parts: the new element is in the set while the import still runs', async () => {
    const { dataplane, table, suffix } = newDataplane('libnftables');
    await dataplane.install(safeState(suffix));
    const expiresAt = Date.now() + 120_000;
    const many = Array.from({ length: 100_000 }, (_, i) => learned(`198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, expiresAt));
    let importDone = false;
    const imported = dataplane.importLearned(many).then(() => {
      importDone = true;
    });
    // 198.19.255.1 is not among the 100,000 (they end at 198.19.134.159)
    const mirrored = await dataplane.addLearned([learned('198.19.255.1', expiresAt)]);
    expect(mirrored.written).toBe(1);
    expect(importDone).toBe(false);
    expect((await setElements(table, 'ds_1a2b_v4')).some((e) => e.val === '198.19.255.1')).toBe(true);
    await imported;
    expect((await setElements(table, 'ds_1a2b_v4')).length).toBe(100_001);
  });
});

describe('atomicity and ownership', () => {
  it('an invalid document applies nothing and the previous table stays intact', async () => {
    const { dataplane, table, suffix } = newDataplane('libnftables');
    await dataplane.install(safeState(suffix));
    await dataplane.addLearned([learned('198.18.5.1', Date.now() + 60_000)]);
    const before = await nftJson('list', 'table', 'inet', table);
    // a prefix length the kernel cannot take, in a policy that also changes other chains
    const bad = {
      ...webEgress,
      egress: [{ ...webEgress.egress![1]!, destination: { ...webEgress.egress![1]!.destination, nets: [{ family: 4 as const, text: '198.18.0.0/40' }] } }],
    };
    const failed = await dataplane.install(safeState(suffix, { domainSets: [s3Set], policies: [bad] })).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isKernelError(failed)).toBe(true);
    const after = await nftJson('list', 'table', 'inet', table);
    const withoutExpiry = (doc: typeof before) => JSON.stringify(doc).replace(/"expires": ?\d+/g, '');
    expect(withoutExpiry(after)).toBe(withoutExpiry(before));
  });

  it('never touches other tables, and remove() deletes only its own', async () => {
    const suffix = uniqueSuffix();
    const foreign = `foreign_${suffix}`;
    cleanups.push(() => deleteTableIfPresent('ip', foreign));
    await nft('add', 'table', 'ip', foreign);
    await nft('add', 'chain', 'ip', foreign, 'c', '{ type filter hook forward priority 5; policy accept; }');
    await nft('add', 'set', 'ip', foreign, 's', '{ type ipv4_addr; flags timeout; }');
    await nft('add', 'element', 'ip', foreign, 's', '{ 198.18.9.9 timeout 1h }');
    await nft('add', 'rule', 'ip', foreign, 'c', 'ip daddr @s counter accept');
    const snapshot = async () => JSON.stringify(await nftJson('list', 'table', 'ip', foreign)).replace(/"expires": ?\d+/g, '');
    const before = await snapshot();

    const { dataplane, table } = newDataplane('libnftables');
    await dataplane.install(safeState(suffix));
    await dataplane.install(safeState(suffix, { policies: [webEgress] }));
    await dataplane.addLearned([learned('198.18.9.9', Date.now() + 60_000)]);
    expect(await snapshot()).toBe(before);
    await dataplane.remove();
    expect(await tableExists('inet', table)).toBe(false);
    expect(await snapshot()).toBe(before);
    await dataplane.remove(); // nothing left to remove: no error
  });
});

describe.each(executors)('other tables\' base chains via %s (untrackDns auto reads them)', (executor) => {
  it('a ruleset listing counts their rules, `list chains` lists them without; regular chains are left out', async () => {
    // A forward chain of a table of the test's own that passes everything: this namespace
    // routes between the lab namespaces of other tests.
    const other = `dnsplane_fw${uniqueSuffix()}`;
    cleanups.push(() => deleteTableIfPresent('ip', other));
    await nft('add', 'table', 'ip', other);
    await nft('add', 'chain', 'ip', other, 'fw', '{ type filter hook forward priority 50; policy accept; }');
    await nft('add', 'chain', 'ip', other, 'helper');
    await nft('add', 'rule', 'ip', other, 'fw', 'counter');
    await nft('add', 'rule', 'ip', other, 'fw', 'jump', 'helper');
    const run = executor === 'libnftables' ? LibnftablesExecutor.create() : new NftCliExecutor(nftProcessRunner);
    const handle = new JsonNftHandle(run, silentLogger);
    try {
      const ours = { family: 'inet' as const, name: `dnsplane_t${uniqueSuffix()}` };
      const ruleset = await handle.listRuleset(ours);
      expect(ruleset.table).toBeUndefined();
      expect(ruleset.baseChains.filter((c) => c.table === other)).toEqual([{ family: 'ip', table: other, name: 'fw', type: 'filter', hook: 'forward', policy: 'accept', rules: 2 }]);
      expect((await handle.listBaseChains()).filter((c) => c.table === other)).toEqual([{ family: 'ip', table: other, name: 'fw', type: 'filter', hook: 'forward', policy: 'accept' }]);
      expect(forwardGates(ruleset.baseChains.filter((c) => c.table === other), ours, [])).toEqual([`nft table ip ${other}: filter chain fw (forward, policy accept, 2 rules)`]);
      expect(await handle.countRules({ family: 'ip', table: other, name: 'fw' })).toBe(2);
      expect(await handle.countRules({ family: 'ip', table: other, name: 'helper' })).toBe(0);
      expect(await handle.countRules({ family: 'ip', table: other, name: 'missing' })).toBeUndefined();
    } finally {
      run.close();
    }
  });
});
