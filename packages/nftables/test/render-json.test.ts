import { describe, expect, it } from 'vitest';
import { NftTransaction, renderDocument, serializeDocument, type NftTableRef } from '@dnsplane/nftables';

const table: NftTableRef = { family: 'inet', name: 'dnsplane_r' };

describe('renderDocument', () => {
  it('starts with metainfo and renders one command object per operation', () => {
    const tx = new NftTransaction()
      .add({ kind: 'table', table })
      .add({ kind: 'chain', chain: { table, name: 'fwd', base: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' } } })
      .flush({ kind: 'chain', chain: { table, name: 'fwd', base: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' } } })
      .delete({ kind: 'table', table });
    expect(renderDocument(tx)).toEqual({
      nftables: [
        { metainfo: { json_schema_version: 1 } },
        { add: { table: { family: 'inet', name: 'dnsplane_r' } } },
        { add: { chain: { family: 'inet', table: 'dnsplane_r', name: 'fwd', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' } } },
        { flush: { chain: { family: 'inet', table: 'dnsplane_r', name: 'fwd' } } },
        { delete: { table: { family: 'inet', name: 'dnsplane_r' } } },
      ],
    });
  });

  it('writes element timeouts as whole seconds and deletes elements by value', () => {
    const element = (timeout?: number) => ({
      kind: 'element' as const,
      element: { table, set: 'ds_1_v4', elements: [{ value: '198.18.0.1', ...(timeout !== undefined ? { timeout } : {}) }] },
    });
    const doc = renderDocument(new NftTransaction().add(element(30)).delete(element(30)));
    expect(doc.nftables.slice(1)).toEqual([
      { add: { element: { family: 'inet', table: 'dnsplane_r', name: 'ds_1_v4', elem: [{ elem: { val: '198.18.0.1', timeout: 30 } }] } } },
      { delete: { element: { family: 'inet', table: 'dnsplane_r', name: 'ds_1_v4', elem: ['198.18.0.1'] } } },
    ]);
  });

  it('refuses fractional or zero timeouts, which nft 1.0.6 would turn into permanent elements', () => {
    const tx = (timeout: number) =>
      new NftTransaction().add({ kind: 'element', element: { table, set: 's', elements: [{ value: '198.18.0.1', timeout }] } });
    expect(() => renderDocument(tx(2.5))).toThrow(RangeError);
    expect(() => renderDocument(tx(0))).toThrow(RangeError);
  });

  it('refuses to flush a rule', () => {
    expect(() => new NftTransaction().flush({ kind: 'rule', rule: { table, chain: 'c', expr: [] } })).toThrow(TypeError);
  });

  it('serializes compact for the kernel and indented for humans', () => {
    const doc = renderDocument(new NftTransaction().add({ kind: 'table', table }));
    expect(serializeDocument(doc)).not.toContain('\n');
    expect(serializeDocument(doc, true)).toContain('\n  ');
  });
});
