import { describe, expect, it } from 'vitest';
import type { DesiredState } from '../src/desired-state.js';
import { FakeDataplane } from '../src/fake-dataplane.js';

const state = (ids: number[]): DesiredState => ({
  domainSets: ids.map((id) => ({ id, name: `ds_${id}`, patterns: [] })),
  policies: [],
  endpoints: [],
  dns: { trustedServers: [], minTTL: 30, extraTTL: 10, maxAddressesPerName: 256 },
});

describe('FakeDataplane', () => {
  it('records installs, learned import/export and removal, in order', async () => {
    let now = 1_000;
    const fake = new FakeDataplane({ kind: 'iptables', clock: { now: () => now } });
    await fake.install(state([1, 2]));
    await fake.importLearned([
      { setId: 1, family: 4, address: '198.18.0.1', expiresAt: 5_000 },
      { setId: 2, family: 6, address: 'fd00::1', expiresAt: 500 }, // already expired: ignored
    ]);
    fake.learn({ setId: 2, family: 4, address: '198.18.0.2', expiresAt: 9_000 });
    expect(await fake.exportLearned()).toEqual([
      { setId: 1, family: 4, address: '198.18.0.1', expiresAt: 5_000 },
      { setId: 2, family: 4, address: '198.18.0.2', expiresAt: 9_000 },
    ]);
    expect(await fake.status()).toEqual({
      kind: 'iptables',
      objects: ['fake iptables (0 policies)'],
      counters: { learned: 1 },
      learned: 2,
    });
    now = 6_000;
    expect((await fake.status()).learned).toBe(1);
    await fake.remove();
    expect(fake.events.map((e) => e.type)).toEqual(['install', 'importLearned', 'exportLearned', 'remove']);
    expect(fake.removed).toBe(true);
    expect(fake.installed).toBeUndefined();
  });

  it('drops learned members of sets that a new install no longer has; a failed install changes nothing', async () => {
    const fake = new FakeDataplane({ clock: { now: () => 0 } });
    await fake.install(state([1, 2]));
    fake.learn({ setId: 1, family: 4, address: '198.18.0.1', expiresAt: 10 });
    fake.learn({ setId: 2, family: 4, address: '198.18.0.2', expiresAt: 10 });
    const good = fake.installed;
    fake.failNextInstall = new Error('boom');
    await expect(fake.install(state([2]))).rejects.toThrow('boom');
    expect(fake.installed).toBe(good);
    expect(fake.learned.size).toBe(2);
    await fake.install(state([2]));
    expect(fake.learned.entries().map((e) => e.setId)).toEqual([2]);
    expect(fake.installs).toHaveLength(2);
  });

  it('renders without installing', () => {
    const fake = new FakeDataplane();
    expect(JSON.parse(fake.render(state([7])))).toMatchObject({ fake: 'nftables', state: { domainSets: [{ id: 7 }] } });
    expect(fake.events).toEqual([]);
  });
});
