import { describe, expect, it } from 'vitest';
import { LearnedStore, parseLearnedState, serializeLearnedEntries, LEARNED_STATE_VERSION } from '../src/learned-store.js';
import { isInvalidInput } from '../src/errors.js';
import type { Clock } from '../src/runtime.js';

function manualClock(start: number): Clock & { advance(ms: number): void } {
  let now = start;
  return { now: () => now, advance: (ms) => (now += ms) };
}

describe('LearnedStore', () => {
  it('keeps the later expiry when an entry is written again', () => {
    const clock = manualClock(1_000_000);
    const store = new LearnedStore(clock);
    expect(store.record({ setId: 7, family: 4, address: '198.18.0.1', expiresAt: 1_050_000 })).toBe(true);
    expect(store.record({ setId: 7, family: 4, address: '198.18.0.1', expiresAt: 1_020_000 })).toBe(false);
    expect(store.get(7, '198.18.0.1')?.expiresAt).toBe(1_050_000);
    expect(store.record({ setId: 7, family: 4, address: '198.18.0.1', expiresAt: 1_090_000 })).toBe(true);
    expect(store.get(7, '198.18.0.1')?.expiresAt).toBe(1_090_000);
    expect(store.size).toBe(1);
  });

  it('keys by (set, canonical address)', () => {
    const store = new LearnedStore(manualClock(0));
    store.record({ setId: 1, family: 6, address: 'FD00:0:0::1', expiresAt: 10 });
    store.record({ setId: 2, family: 6, address: 'fd00::1', expiresAt: 10 });
    expect(store.has(1, 'fd00::1')).toBe(true);
    expect(store.has(2, 'fd00:0::1')).toBe(true);
    expect(store.size).toBe(2);
  });

  it('treats an entry whose expiry is now or earlier as absent and prunes it', () => {
    const clock = manualClock(100);
    const store = new LearnedStore(clock);
    expect(store.record({ setId: 1, family: 4, address: '198.18.0.9', expiresAt: 100 })).toBe(false);
    store.record({ setId: 1, family: 4, address: '198.18.0.2', expiresAt: 200 });
    clock.advance(99);
    expect(store.has(1, '198.18.0.2')).toBe(true);
    clock.advance(1);
    expect(store.has(1, '198.18.0.2')).toBe(false);
    expect(store.entries()).toEqual([]);
    expect(store.prune()).toBe(1);
  });

  it('drops entries of sets that no longer exist', () => {
    const store = new LearnedStore(manualClock(0));
    store.record({ setId: 1, family: 4, address: '198.18.0.1', expiresAt: 10 });
    store.record({ setId: 2, family: 4, address: '198.18.0.1', expiresAt: 10 });
    expect(store.retainSets(new Set([2]))).toBe(1);
    expect(store.entries().map((e) => e.setId)).toEqual([2]);
  });

  it('round-trips through its serialised form with a version field', () => {
    const clock = manualClock(5_000);
    const store = new LearnedStore(clock);
    store.record({ setId: 3, family: 6, address: 'fd00::20', expiresAt: 9_000, name: 'api.example.com' });
    store.record({ setId: 3, family: 4, address: '198.18.3.4', expiresAt: 8_000 });
    const text = store.serialize();
    expect(JSON.parse(text)).toMatchObject({ version: LEARNED_STATE_VERSION, savedAt: 5_000 });
    const entries = parseLearnedState(text, 'state.json');
    expect(entries).toEqual([
      { setId: 3, family: 4, address: '198.18.3.4', expiresAt: 8_000 },
      { setId: 3, family: 6, address: 'fd00::20', expiresAt: 9_000, name: 'api.example.com' },
    ]);
    const again = new LearnedStore(clock);
    again.recordAll(entries);
    expect(again.serialize()).toBe(text);
  });

  it('keeps the question name it knows when an entry without one refreshes it (the kernel maps know no names)', () => {
    const clock = manualClock(1_000);
    const store = new LearnedStore(clock);
    store.record({ setId: 4, family: 4, address: '198.18.0.7', expiresAt: 5_000, name: 'api.example.com' });
    expect(store.record({ setId: 4, family: 4, address: '198.18.0.7', expiresAt: 6_000 })).toBe(true);
    expect(store.get(4, '198.18.0.7')).toEqual({ setId: 4, family: 4, address: '198.18.0.7', expiresAt: 6_000, name: 'api.example.com' });
    // a name that comes with the entry wins
    store.record({ setId: 4, family: 4, address: '198.18.0.7', expiresAt: 7_000, name: 'www.example.com' });
    expect(store.get(4, '198.18.0.7')?.name).toBe('www.example.com');
    // an expired entry's name is not carried over to a new learning of the address
    clock.advance(10_000);
    store.record({ setId: 4, family: 4, address: '198.18.0.7', expiresAt: 20_000 });
    expect(store.get(4, '198.18.0.7')?.name).toBeUndefined();
  });

  it('serializes given entries as the store would, without a store', () => {
    const clock = manualClock(5_000);
    const store = new LearnedStore(clock);
    store.record({ setId: 1, family: 4, address: '198.18.0.1', expiresAt: 9_000, name: 'api.example.com' });
    store.record({ setId: 2, family: 6, address: 'fd00::1', expiresAt: 8_000 });
    expect(serializeLearnedEntries(store.entries(), 5_000)).toBe(store.serialize());
    expect(JSON.parse(serializeLearnedEntries([], 7))).toEqual({ version: LEARNED_STATE_VERSION, savedAt: 7, entries: [] });
  });

  it('rejects bad state files with file, field and reason', () => {
    const check = (text: string, expected: RegExp): void => {
      try {
        parseLearnedState(text, '/var/lib/dnsplane/state.json');
        expect.unreachable();
      } catch (error) {
        expect(isInvalidInput(error)).toBe(true);
        expect((error as Error).message).toMatch(expected);
      }
    };
    check('{', /^\/var\/lib\/dnsplane\/state\.json: \(document\): not valid JSON/);
    check(JSON.stringify({ version: 99, savedAt: 0, entries: [] }), /state\.json: version: /);
    check(
      JSON.stringify({ version: 1, savedAt: 0, entries: [{ setId: 1, family: 4, address: 'fd00::1', expiresAt: 1 }] }),
      /state\.json: entries\[0\]\.address: "fd00::1" is not an IPv4 address/,
    );
    check(
      JSON.stringify({ version: 1, savedAt: 0, entries: [{ setId: 0, family: 4, address: '198.18.0.1', expiresAt: 1 }] }),
      /entries\[0\]\.setId/,
    );
  });
});
