// Replacing the domain table is atomic for the kernel: until the one-update switch of
// dnsp_table, lookups see the whole old table (exact, wildcard and complex patterns alike)
// and nothing of the new one; after it, the whole new table and nothing of the old. Leftovers
// of the generation before are removed at the next replacement.
import { parseDomainPattern, type DomainSet } from '@dnsplane/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsParserProgram } from '../src/index.js';
import { SERVER4 } from './dns-generator.js';
import { exchangeA } from './dns-exchange.js';
import { ethernetFrame, testPinRoot } from './kernel-harness.js';

const pinRoot = testPinRoot();
let parser: DnsParserProgram | undefined;

const tableA: DomainSet[] = [
  { id: 1, name: 'ds_1', patterns: [parseDomainPattern('*.alpha.test', 'calico')] },
  { id: 3, name: 'ds_3', patterns: [parseDomainPattern('api-*.alpha.test', 'calico'), parseDomainPattern('exact.alpha.test', 'calico')] },
];
const tableB: DomainSet[] = [
  { id: 2, name: 'ds_2', patterns: [parseDomainPattern('*.beta.test', 'calico')] },
  { id: 4, name: 'ds_4', patterns: [parseDomainPattern('api-*.beta.test', 'calico'), parseDomainPattern('www.*.gamma.test', 'cilium-pattern')] },
];

/** The sets a response for `name` teaches now (membership cleared after). */
function learns(name: string): number[] {
  const p = parser as DnsParserProgram;
  const x = exchangeA(name, '198.18.44.4');
  p.socketFilter.testRun({ data: ethernetFrame(x.query) });
  p.socketFilter.testRun({ data: ethernetFrame(x.response) });
  const sets = p.membership().map((m) => m.setId);
  p.clearMembership();
  return sets;
}

const teachesA = (): number[][] => ['www.alpha.test', 'api-x.alpha.test', 'exact.alpha.test'].map(learns);
const teachesB = (): number[][] => ['www.beta.test', 'api-y.beta.test', 'www.x.gamma.test'].map(learns);

beforeAll(() => {
  parser = DnsParserProgram.load({ pinRoot });
  parser.configure({ trustedServers: [{ family: 4, address: SERVER4, port: 53 }], minTTL: 30, extraTTL: 0, maxAddressesPerName: 16 });
});

afterAll(() => {
  parser?.close();
  DnsParserProgram.removePins(pinRoot);
});

describe('setDomainSets switches generations atomically', () => {
  it('lookups see the old table until the switch and the new one after', () => {
    const p = parser as DnsParserProgram;
    p.setDomainSets(tableA);
    const A = [[1], [1, 3], [1, 3]];
    const B = [[2], [2, 4], [4]];
    const none = [[], [], []];
    expect(teachesA()).toEqual(A);
    expect(teachesB()).toEqual(none);

    let during: unknown;
    p.setDomainSets(tableB, { beforeSwitch: () => (during = { a: teachesA(), b: teachesB() }) });
    expect(during).toEqual({ a: A, b: none }); // everything of B written, nothing of it visible
    expect(teachesA()).toEqual(none);
    expect(teachesB()).toEqual(B);
    const keysB = p.liveDomainKeys().length;

    p.setDomainSets(tableA, { beforeSwitch: () => (during = { a: teachesA(), b: teachesB() }) });
    expect(during).toEqual({ a: none, b: B });
    expect(teachesA()).toEqual(A);
    expect(teachesB()).toEqual(none);
    // the generation before (B's) waits for the next replacement, then goes
    const keysA = p.liveDomainKeys().length;
    expect(p.map('domains').keys()).toHaveLength(keysA + keysB);
    p.setDomainSets([]);
    expect(teachesA()).toEqual(none);
    expect(p.map('domains').keys()).toHaveLength(keysA);
    expect(p.liveDomainKeys()).toHaveLength(0);
    p.setDomainSets(tableB);
    expect(p.map('domains').keys()).toHaveLength(keysB);
    expect(teachesB()).toEqual(B);
  });
});
