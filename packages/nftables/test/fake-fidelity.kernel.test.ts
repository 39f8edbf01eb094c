// The fake must behave like the kernel where the driver depends on it: the same sequence of
// installs and learned writes, through FakeNftHandle and through the real kernel, leaves the
// same chains, rule fingerprints, sets and elements; and both refuse the same bad transaction.
import type { DesiredState } from '@dnsplane/core';
import { isKernelError } from '@dnsplane/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  FakeNftHandle,
  JsonNftHandle,
  LibnftablesExecutor,
  NftCliExecutor,
  NftTransaction,
  createNftablesDataplane,
  loadAddon,
  nftProcessRunner,
  silentLogger,
  type NftHandle,
  type NftTableSnapshot,
} from '@dnsplane/nftables';
import { baseState, githubSet, s3Set, webEgress } from './fixtures.js';
import { deleteTableIfPresent, uniqueSuffix } from './kernel-helpers.js';

const tables: string[] = [];
afterEach(async () => {
  for (const table of tables.splice(0)) await deleteTableIfPresent('inet', table);
});

function comparable(snapshot: NftTableSnapshot | undefined) {
  if (snapshot === undefined) return undefined;
  return {
    chains: snapshot.chains
      .map((c) => ({ name: c.name, base: c.base, comments: c.rules.map((r) => r.comment) }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    sets: snapshot.sets
      .map((s) => ({ name: s.name, type: s.type, flags: s.flags, elements: s.elements.map((e) => `${e.value}/${e.timeout}`).sort() }))
      .sort((a, b) => a.name.localeCompare(b.name)),
  };
}

function states(suffix: string): DesiredState[] {
  const base = baseState();
  const endpoints = base.endpoints.filter((e) => !e.host).map((e) => ({ ...e, interface: `dpf${suffix}${e.name.slice(0, 3)}` }));
  const first = { ...base, endpoints };
  const reordered = { ...first, policies: [base.policies[0]!, { ...webEgress, egress: [...webEgress.egress!].reverse() }] };
  const fewer = { ...first, domainSets: [s3Set], policies: [{ ...webEgress, egress: webEgress.egress!.slice(1) }] };
  return [first, first, reordered, fewer, first];
}

describe('FakeNftHandle fidelity', () => {
  it('ends in the same table as the kernel after the same installs and learned writes', async () => {
    const suffix = uniqueSuffix();
    const tableName = `dnsplane_t${suffix}`;
    tables.push(tableName);
    const executor = loadAddon() !== undefined ? LibnftablesExecutor.create() : new NftCliExecutor(nftProcessRunner);
    const real: NftHandle = new JsonNftHandle(executor, silentLogger);
    const fake = new FakeNftHandle();
    const table = { family: 'inet' as const, name: tableName };
    const drivers = [real, fake].map((handle) => createNftablesDataplane({ tableName, handle }));
    try {
      for (const [step, state] of states(suffix).entries()) {
        for (const driver of drivers) {
          await driver.install(state);
          const now = Date.now();
          await driver.addLearned([
            { setId: githubSet.id, family: 4, address: `198.18.7.${step}`, expiresAt: now + 600_000 },
            { setId: s3Set.id, family: 6, address: `fd00::7:${step}`, expiresAt: now + 300_000 },
          ]);
        }
        expect(comparable(await fake.listTable(table)), `after step ${step}`).toEqual(comparable(await real.listTable(table)));
      }
      // both refuse deleting a set that rules still reference, and change nothing
      const before = [comparable(await real.listTable(table)), comparable(await fake.listTable(table))];
      const bad = new NftTransaction()
        .add({ kind: 'set', set: { table, name: 'extra_v4', type: 'ipv4_addr', flags: ['timeout'] } })
        .delete({ kind: 'set', set: { table, name: 'ds_1a2b_v4', type: 'ipv4_addr', flags: [] } });
      for (const handle of [real, fake]) {
        const error = await handle.apply(bad).then(() => undefined, (e: unknown) => e);
        expect(isKernelError(error)).toBe(true);
      }
      expect([comparable(await real.listTable(table)), comparable(await fake.listTable(table))]).toEqual(before);
    } finally {
      for (const driver of drivers) await driver.close();
      executor.close();
    }
  });
});
