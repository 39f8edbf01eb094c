// The lab's plan of names and addresses, and its zone: pure functions, no kernel needed.
import { describe, expect, it } from 'vitest';
import { allNamespaces, isLabId, labIdOfNamespace, planTopology, randomLabId } from './topology.js';
import { buildZone, freshName, NAMES, renderDnsmasqConfig, renderZoneFile } from './zone.js';

const inLabSpace = (address: string): boolean =>
  address.includes(':') ? /^fd[0-9a-f]{2}:/.test(address) : /^198\.(18|19)\./.test(address);

describe('lab topology plan', () => {
  it('names everything after the lab id, with interface names of at most 15 characters', () => {
    const id = randomLabId();
    expect(isLabId(id)).toBe(true);
    const plan = planTopology(id, 49);
    const interfaces = [...plan.clients, plan.dnsLink, plan.webLink, plan.untrustedLink].map((link) => link.hostInterface);
    expect(new Set(interfaces).size).toBe(interfaces.length);
    for (const name of interfaces) {
      expect(name.startsWith(`dpl${id}`)).toBe(true);
      expect(name.length).toBeLessThanOrEqual(15);
    }
    for (const ns of allNamespaces(plan)) expect(labIdOfNamespace(ns)).toBe(id);
    expect(plan.clients[0]).toMatchObject({ name: 'client1', hostInterface: `dpl${id}c1`, namespace: `dpl${id}-client1` });
  });

  it('uses only 198.18.0.0/15 and fd00::/8', () => {
    const plan = planTopology('abc123', 3);
    for (const link of [...plan.clients, plan.dnsLink, plan.webLink, plan.untrustedLink]) {
      for (const address of [...link.addresses.ipv4, ...link.addresses.ipv6, link.gateway.ipv4, link.gateway.ipv6]) {
        expect(inLabSpace(address), address).toBe(true);
      }
    }
    const zone = buildZone(16383);
    for (const record of zone.records) if (record.type !== 'CNAME') expect(inLabSpace(record.address), record.address).toBe(true);
  });

  it('rejects bad ids and client counts', () => {
    expect(() => planTopology('ABC', 2)).toThrow(/lab id/);
    expect(() => planTopology('abc123', 0)).toThrow(/clients/);
    expect(() => planTopology('abc123', 50)).toThrow(/clients/);
  });
});

describe('lab zone', () => {
  it('gives every fresh name its own addresses', () => {
    const zone = buildZone(16383);
    expect(new Set(zone.fresh.map((entry) => entry.ipv4)).size).toBe(16383);
    expect(new Set(zone.fresh.map((entry) => entry.ipv6)).size).toBe(16383);
    expect(freshName(1)).toEqual({ index: 1, name: 't0001.fresh.lab.test', ipv4: '198.19.64.1', ipv6: 'fd00:19::f:1' });
    expect(() => freshName(16384)).toThrow(/out of range/);
    // No fresh address collides with a well-known one.
    const known = new Set(zone.records.filter((r) => !r.name.includes('.fresh.')).flatMap((r) => (r.type === 'CNAME' ? [] : [r.address])));
    expect(zone.fresh.some((entry) => known.has(entry.ipv4) || known.has(entry.ipv6))).toBe(false);
  });

  it('renders the same records for dnsmasq and unbound, CNAME targets before CNAMEs for dnsmasq', () => {
    const zone = buildZone(3);
    const dnsmasq = renderDnsmasqConfig(zone, { ipv4: '198.18.53.2', ipv6: 'fd00:18:53::2' });
    const master = renderZoneFile(zone, '198.18.53.3');
    expect(dnsmasq).toContain(`host-record=${NAMES.ttl[0]!.name},${NAMES.ttl[0]!.ipv4},1`);
    expect(master).toContain(`${NAMES.ttl[0]!.name}. 1 IN A ${NAMES.ttl[0]!.ipv4}`);
    expect(dnsmasq.match(/^host-record=many\.lab\.test,/gm)).toHaveLength(40);
    expect(master.match(/^many\.lab\.test\. 300 IN A /gm)).toHaveLength(40);
    const firstCname = dnsmasq.indexOf('cname=');
    expect(dnsmasq.lastIndexOf('host-record=')).toBeLessThan(firstCname);
    expect(dnsmasq.indexOf(`cname=${NAMES.chain.names[2]}`)).toBeLessThan(dnsmasq.indexOf(`cname=${NAMES.chain.names[0]}`));
    expect(master).toContain(`*.${NAMES.wildcard.domain}. 300 IN A ${NAMES.wildcard.ipv4}`);
  });
});
