// The driver's planning and learned-entry logic against the in-memory fake handle. The same
// behaviours run against the real kernel in nftables.kernel.test.ts.
import type { LearnedEntry } from '@dnsplane/core';
import { describe, expect, it } from 'vitest';
import {
  FakeNftHandle,
  createNftablesDataplane,
  sortedOperationLines,
  type LearnedSource,
  type NftTableRef,
} from '@dnsplane/nftables';
import { ManualClock, baseState, githubSet, s3Set, webEgress } from './fixtures.js';

const tableName = 'dnsplane_unit';
const table: NftTableRef = { family: 'inet', name: tableName };

function setup(options: { readonly elementUpdates?: boolean } = {}) {
  const clock = new ManualClock();
  const handle = new FakeNftHandle(clock, options);
  const dataplane = createNftablesDataplane({ tableName, handle, clock });
  return { clock, handle, dataplane };
}

const learned = (address: string, expiresAt: number, setId = githubSet.id): LearnedEntry => ({
  setId,
  family: address.includes(':') ? 6 : 4,
  address,
  expiresAt,
});

async function elements(handle: FakeNftHandle, set: string) {
  const snapshot = await handle.listTable(table);
  return snapshot?.sets.find((s) => s.name === set)?.elements ?? [];
}

describe('NftablesDataplane (fake handle)', () => {
  it('render() is the first-install document, pretty-printed, then the tc part it programs', () => {
    const { dataplane } = setup();
    const text = dataplane.render(baseState());
    const [nft = '', tc = ''] = text.split('\n\n');
    const doc = JSON.parse(nft) as { nftables: unknown[] };
    expect(doc.nftables[0]).toEqual({ metainfo: { json_schema_version: 1 } });
    expect(doc.nftables[1]).toEqual({ add: { table: { family: 'inet', name: tableName } } });
    expect(text).toContain('\n  ');
    const marks = (JSON.parse(tc) as { 'dnsplane-tc': { membershipMarks: unknown } })['dnsplane-tc'].membershipMarks;
    expect(marks).toEqual({
      markMask: '0x00ff0000',
      bits: { [String(0x1a2b)]: '0x00010000' },
      overflow: [],
      endpoints: [{ endpoint: 'web', interface: 'veth-web', entries: [{ setId: 0x1a2b, bit: '0x00010000' }] }],
      mirrorOnlyEndpoints: [],
      mirrorOnlySets: [],
    });
  });

  it('first install creates the table; the same state again applies nothing', async () => {
    const { handle, dataplane } = setup();
    await dataplane.install(baseState());
    expect(handle.applied).toHaveLength(1);
    await dataplane.install(baseState());
    expect(handle.applied).toHaveLength(1);
  });

  it('a changed policy flushes and refills only its chain and keeps learned members', async () => {
    const { clock, handle, dataplane } = setup();
    await dataplane.install(baseState());
    await dataplane.addLearned([learned('198.18.1.1', clock.now() + 60_000), learned('fd00::1', clock.now() + 60_000)]);
    const changed = { ...webEgress, egress: webEgress.egress!.slice(0, 2) };
    await dataplane.install(baseState({ policies: [baseState().policies[0]!, changed] }));
    const lines = sortedOperationLines(handle.applied.at(-1)!);
    expect(lines.filter((l) => l.startsWith('{"flush"'))).toEqual([
      `{"flush":{"chain":{"family":"inet","table":"${tableName}","name":"pol_web-egress_egress"}}}`,
    ]);
    expect(lines.some((l) => l.includes('"set"') && !l.includes('"rule"'))).toBe(false);
    expect((await elements(handle, 'ds_1a2b_v4')).map((e) => e.value)).toEqual(['198.18.1.1']);
    expect((await elements(handle, 'ds_1a2b_v6')).map((e) => e.value)).toEqual(['fd00::1']);
  });

  it('adds new domain sets and deletes vanished ones, with the rules that used them', async () => {
    const { handle, dataplane } = setup();
    await dataplane.install(baseState({ domainSets: [githubSet] }));
    await dataplane.install(baseState({ domainSets: [githubSet, s3Set] }));
    let sets = (await handle.listTable(table))!.sets.map((s) => s.name);
    expect(sets).toEqual(['ds_1a2b_v4', 'ds_1a2b_v6', 'ds_3c4d_v4', 'ds_3c4d_v6']);
    const noGithub = { ...webEgress, egress: webEgress.egress!.slice(1) };
    await dataplane.install(baseState({ domainSets: [s3Set], policies: [baseState().policies[0]!, noGithub] }));
    sets = (await handle.listTable(table))!.sets.map((s) => s.name);
    expect(sets).toEqual(['ds_3c4d_v4', 'ds_3c4d_v6']);
  });

  it('removes chains of endpoints that are no longer selected', async () => {
    const { handle, dataplane } = setup();
    await dataplane.install(baseState());
    const [web, node, idle] = baseState().endpoints;
    await dataplane.install(baseState({ endpoints: [{ ...web!, egressPolicies: [] }, node!, idle!] }));
    const chains = (await handle.listTable(table))!.chains.map((c) => c.name);
    expect(chains).not.toContain('ep_web_egress');
    expect(chains).toContain('ep_web_ingress');
    // no endpoint left to dispatch in egress: those base chains go too (they would only accept)
    expect(chains).not.toContain('forward_egress');
    expect(chains).not.toContain('input_egress');
    expect(chains).toContain('forward_ingress');
  });

  it('writes timeouts in whole seconds rounded up', async () => {
    const { clock, handle, dataplane } = setup();
    await dataplane.install(baseState());
    const result = await dataplane.addLearned([learned('198.18.1.1', clock.now() + 1_200), learned('198.18.1.2', clock.now() + 30_001)]);
    expect(result).toEqual({ written: 2, unchanged: 0, ignored: 0 });
    const timeouts = Object.fromEntries((await elements(handle, 'ds_1a2b_v4')).map((e) => [e.value, e.timeout]));
    expect(timeouts).toEqual({ '198.18.1.1': 2, '198.18.1.2': 31 });
  });

  it.each([
    { kernel: 'since 6.12 (updates an element in place)', elementUpdates: true, refresh: '{"add":{"element"', deletes: 0 },
    { kernel: 'before 6.12 (ignores a re-add)', elementUpdates: false, refresh: '{"delete":{"element"', deletes: 1 },
  ])('refreshes an existing element only when the new expiry is later — kernel $kernel', async ({ elementUpdates, refresh, deletes }) => {
    const { clock, handle, dataplane } = setup({ elementUpdates });
    await dataplane.install(baseState());
    await dataplane.addLearned([learned('198.18.1.1', clock.now() + 10_000)]);
    clock.advance(5_000);
    // earlier than what the set holds: nothing written
    expect(await dataplane.addLearned([learned('198.18.1.1', clock.now() + 2_000)])).toEqual({ written: 0, unchanged: 1, ignored: 0 });
    // same timeout value as the first write (10 s) but later: must still refresh
    expect(await dataplane.addLearned([learned('198.18.1.1', clock.now() + 10_000)])).toEqual({ written: 1, unchanged: 0, ignored: 0 });
    const ops = sortedOperationLines(handle.applied.at(-1)!);
    expect(ops.filter((l) => l.startsWith('{"delete":{"element"'))).toHaveLength(deletes);
    expect(ops.some((l) => l.startsWith(refresh))).toBe(true);
    if (elementUpdates) {
      // one add, carrying the new expiry
      expect(ops).toEqual([expect.stringContaining('"elem":[{"elem":{"val":"198.18.1.1","timeout":10,"expires":10}}]')]);
    }
    expect((await elements(handle, 'ds_1a2b_v4'))[0]).toMatchObject({ value: '198.18.1.1', expires: 10 });
    // the probe (its own set, once) left nothing behind
    expect((await handle.listTable(table))?.sets.map((x) => x.name)).not.toContain('probe_element_refresh');
    clock.advance(9_000);
    expect((await elements(handle, 'ds_1a2b_v4')).map((e) => e.value)).toEqual(['198.18.1.1']);
    clock.advance(1_000);
    expect(await elements(handle, 'ds_1a2b_v4')).toEqual([]);
  });

  it('a large import gives way to the mirror every 10,000 entries', async () => {
    const { clock, handle, dataplane } = setup();
    await dataplane.install(baseState());
    const before = handle.applied.length;
    const many = Array.from({ length: 25_000 }, (_, i) => learned(`198.18.${i >> 8}.${i & 255}`, clock.now() + 60_000));
    const imported = dataplane.importLearned(many);
    // a mirror write while the import runs: it goes in after the first part, not after all three
    const mirrored = dataplane.addLearned([learned('198.19.255.1', clock.now() + 60_000)]);
    await Promise.all([imported, mirrored]);
    expect(handle.applied.length - before).toBe(4); // three parts and the mirror's write
    const mirrorAt = handle.applied.slice(before).findIndex((tx) => sortedOperationLines(tx).some((l) => l.includes('198.19.255.1')));
    expect(mirrorAt).toBe(1);
    expect((await elements(handle, 'ds_1a2b_v4')).length).toBe(25_001);
  });

  it('a restore of what the table holds writes nothing: a listing keeps the expiries this process wrote', async () => {
    const { clock, handle, dataplane } = setup();
    await dataplane.install(baseState());
    const written = [learned('198.18.1.1', clock.now() + 20_700), learned('fd00::1', clock.now() + 40_700, s3Set.id)];
    expect(await dataplane.addLearned(written)).toMatchObject({ written: 2 });
    clock.advance(400);
    // nft lists 20 and 40 whole seconds left, truncated: on their own, bounds 600 ms short of
    // the elements' real expiry and 300 ms short of the membership's
    await dataplane.exportLearned();
    const before = handle.applied.length;
    expect(await dataplane.addLearned(written)).toEqual({ written: 0, unchanged: 2, ignored: 0 });
    expect(handle.applied.length).toBe(before);
  });

  it('an element listed as outliving the membership is left alone, however the write would round', async () => {
    const { clock, handle, dataplane } = setup();
    await dataplane.install(baseState());
    const start = clock.now();
    const membership = start + 9_200;
    await dataplane.addLearned([learned('198.18.1.1', membership)]); // timeout 10 s
    clock.advance(300);
    // another process (a restart) lists it: 9 whole seconds left, a bound 100 ms after the membership's
    const restarted = createNftablesDataplane({ tableName, handle, clock });
    await restarted.install(baseState());
    await restarted.exportLearned();
    clock.advance(500);
    // a write would ask for 9 s from now, 500 ms past the listed bound (the old comparison wrote
    // it); the bound is past the membership's expiry, so there is no reason to write
    expect(await restarted.addLearned([learned('198.18.1.1', membership)])).toEqual({ written: 0, unchanged: 1, ignored: 0 });
    // a membership 1 ms past the listed bound is written
    expect(await restarted.addLearned([learned('198.18.1.1', start + 9_301)])).toMatchObject({ written: 1 });
  });

  it('an export never says an element lives longer than it does, even when the listing takes a while', async () => {
    const clock = new ManualClock();
    // the kernel reads the elements at the start; the listing returns 1.5 s later
    class SlowListing extends FakeNftHandle {
      override async listTable(ref: NftTableRef, options: { readonly elements?: boolean } = {}) {
        const snapshot = await super.listTable(ref, options);
        clock.advance(1_500);
        return snapshot;
      }
    }
    const handle = new SlowListing(clock);
    const dataplane = createNftablesDataplane({ tableName, handle, clock });
    await dataplane.install(baseState());
    await dataplane.addLearned([learned('198.18.1.1', clock.now() + 9_900)]); // the element ends 10 s from now
    const endsAt = clock.now() + 10_000;
    const restarted = createNftablesDataplane({ tableName, handle, clock });
    await restarted.install(baseState());
    clock.advance(100);
    const [exported] = await restarted.exportLearned();
    expect(exported!.expiresAt).toBeLessThanOrEqual(endsAt);
    expect(exported!.expiresAt).toBeGreaterThan(endsAt - 1_000);
  });

  it('ignores entries of unknown sets and expired entries', async () => {
    const { clock, dataplane } = setup();
    await dataplane.install(baseState());
    const result = await dataplane.addLearned([learned('198.18.1.1', clock.now() - 1), learned('198.18.1.2', clock.now() + 5_000, 999)]);
    expect(result).toEqual({ written: 0, unchanged: 0, ignored: 2 });
  });

  it('exports what the sets hold and imports it into another table', async () => {
    const { clock, handle, dataplane } = setup();
    await dataplane.install(baseState());
    await dataplane.addLearned([learned('198.18.1.1', clock.now() + 20_000), learned('fd00::2', clock.now() + 40_000, s3Set.id)]);
    const exported = await dataplane.exportLearned();
    expect(exported.sort((a, b) => a.address.localeCompare(b.address))).toEqual([
      { setId: githubSet.id, family: 4, address: '198.18.1.1', expiresAt: clock.now() + 20_000 },
      { setId: s3Set.id, family: 6, address: 'fd00::2', expiresAt: clock.now() + 40_000 },
    ]);
    const other = createNftablesDataplane({ tableName: 'dnsplane_other', handle, clock });
    await other.install(baseState());
    await other.importLearned(exported);
    expect((await other.exportLearned()).map((e) => e.address).sort()).toEqual(['198.18.1.1', 'fd00::2']);
  });

  it('reports objects and element counts, and remove() deletes only its own table', async () => {
    const { clock, handle, dataplane } = setup();
    const other = createNftablesDataplane({ tableName: 'dnsplane_other', handle, clock });
    await other.install(baseState());
    await dataplane.install(baseState());
    await dataplane.addLearned([learned('198.18.1.1', clock.now() + 20_000)]);
    const status = await dataplane.status();
    expect(status.kind).toBe('nftables');
    expect(status.learned).toBe(1);
    expect(status.counters['elements.ds_1a2b_v4']).toBe(1);
    expect(status.objects).toContain(`nft table inet ${tableName}`);
    expect(status.objects).toContain(`nft set inet ${tableName} ds_1a2b_v4`);
    await dataplane.remove();
    expect((await handle.listTables()).map((t) => t.name)).toEqual(['dnsplane_other']);
    await dataplane.remove(); // idempotent
  });

  it('a counters status (a metrics scrape) gives what the full one does without listing the elements, once the table is known', async () => {
    const clock = new ManualClock();
    const listings: Array<boolean> = [];
    class CountingListings extends FakeNftHandle {
      override async listTable(ref: NftTableRef, options: { readonly elements?: boolean } = {}) {
        listings.push(options.elements !== false);
        return super.listTable(ref, options);
      }
    }
    const handle = new CountingListings(clock);
    const dataplane = createNftablesDataplane({ tableName, handle, clock });
    await dataplane.install(baseState()); // created here: every element is one this process wrote
    await dataplane.addLearned([learned('198.18.1.1', clock.now() + 5_000), learned('198.18.1.2', clock.now() + 20_000), learned('fd00::2', clock.now() + 20_000, s3Set.id)]);
    listings.length = 0;
    const counted = await dataplane.status({ detail: 'counters' });
    expect(listings).toEqual([false]);
    expect(counted).toEqual(await dataplane.status());
    expect(counted.learned).toBe(3);
    clock.advance(6_000); // the first element's timeout ended: the kernel (the fake) dropped it
    expect((await dataplane.status({ detail: 'counters' })).counters).toEqual((await dataplane.status()).counters);
    expect((await dataplane.status({ detail: 'counters' })).learned).toBe(2);

    // a driver that did not create the table (a restart) lists its elements once, then counts
    const restarted = createNftablesDataplane({ tableName, handle, clock });
    await restarted.install(baseState());
    listings.length = 0;
    expect((await restarted.status({ detail: 'counters' })).learned).toBe(2);
    expect((await restarted.status({ detail: 'counters' })).learned).toBe(2);
    expect(listings).toEqual([true, false]);

    // the whole table's listing grows old (10 minutes): the next scrape lists it again, once
    clock.advance(10 * 60_000);
    await restarted.addLearned([learned('198.18.1.3', clock.now() + 20_000)]);
    listings.length = 0;
    expect((await restarted.status({ detail: 'counters' })).learned).toBe(1);
    expect((await restarted.status({ detail: 'counters' })).learned).toBe(1);
    expect(listings).toEqual([true, false]);
  });

  it('mirrors batches from an injected LearnedSource until closed', async () => {
    const clock = new ManualClock();
    const handle = new FakeNftHandle(clock);
    let emit: ((entries: readonly LearnedEntry[]) => void) | undefined;
    let unsubscribed = false;
    const learnedSource: LearnedSource = {
      subscribe(onLearned) {
        emit = onLearned;
        return () => {
          unsubscribed = true;
        };
      },
    };
    const dataplane = createNftablesDataplane({ tableName, handle, clock, learnedSource });
    await dataplane.install(baseState());
    emit?.([learned('198.18.1.9', clock.now() + 30_000)]);
    await dataplane.status(); // serialised after the mirrored write
    expect((await elements(handle, 'ds_1a2b_v4')).map((e) => e.value)).toEqual(['198.18.1.9']);
    await dataplane.close();
    expect(unsubscribed).toBe(true);
  });

  it('a failing transaction changes nothing (fake keeps kernel atomicity)', async () => {
    const { handle, dataplane } = setup();
    await dataplane.install(baseState());
    const before = await handle.listTable(table);
    const broken = { ...webEgress, egress: [{ ...webEgress.egress![0]!, destination: { ...webEgress.egress![0]!.destination, domainSetId: 4242 } }] };
    await expect(dataplane.install(baseState({ policies: [broken] }))).rejects.toThrow(/unknown domain set/);
    expect(await handle.listTable(table)).toEqual(before);
  });
});
