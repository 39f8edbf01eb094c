import { describe, expect, it } from 'vitest';
import { assignDomainSetIds, domainSetHashId, domainSetKey, domainSetName } from '../src/domain-set-id.js';

describe('domain set ids', () => {
  it('derive the key from sorted, de-duplicated pattern texts', () => {
    expect(domainSetKey(['b.example.com', 'a.example.com', 'b.example.com'])).toBe('a.example.com\nb.example.com');
  });

  it('are the same whatever the order of the keys (golden values)', () => {
    const keys = ['api.github.com', '*.s3.amazonaws.com', 'api.github.com\nexample.org'];
    const forward = assignDomainSetIds(keys);
    const backward = assignDomainSetIds([...keys].reverse());
    expect([...forward.entries()].sort()).toEqual([...backward.entries()].sort());
    expect(forward.get('api.github.com')).toBe(domainSetHashId('api.github.com'));
    // Golden: first 32 bits of SHA-256 of the key. A change here breaks learned state on upgrade.
    expect(domainSetHashId('api.github.com')).toMatchInlineSnapshot(`1529911237`);
  });

  it('stay the same when unrelated sets are added', () => {
    const before = assignDomainSetIds(['a.example.com']);
    const after = assignDomainSetIds(['a.example.com', 'z.example.com', 'b.example.com']);
    expect(after.get('a.example.com')).toBe(before.get('a.example.com'));
  });

  it('resolve collisions deterministically in sorted key order', () => {
    const collide = (key: string): number => (key.startsWith('z') ? 0xffffffff : 5);
    const ids = assignDomainSetIds(['c.example.com', 'a.example.com', 'b.example.com', 'z1', 'z2'], collide);
    expect(Object.fromEntries(ids)).toEqual({
      'a.example.com': 5,
      'b.example.com': 6,
      'c.example.com': 7,
      z1: 0xffffffff,
      z2: 1, // wraps around, skipping 0
    });
  });

  it('name sets with the id in 8 hex digits', () => {
    expect(domainSetName(0x1f)).toBe('ds_0000001f');
    expect(domainSetName(0xffffffff)).toBe('ds_ffffffff');
  });
});
