import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FakeNftHandle, NftTransaction, desiredTable, planInstall, sortedOperationLines, type NftTableRef } from '@dnsplane/nftables';
import { baseState, githubSet, webEgress } from './fixtures.js';

const table: NftTableRef = { family: 'inet', name: 'dnsplane_golden' };

function golden(name: string, lines: readonly string[]): void {
  const file = new URL(`./golden/${name}`, import.meta.url);
  const text = `${lines.join('\n')}\n`;
  if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(file)) writeFileSync(file, text);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

async function installed(): Promise<FakeNftHandle> {
  const handle = new FakeNftHandle();
  await handle.apply(planInstall(desiredTable(baseState(), table), undefined).transaction);
  return handle;
}

describe('planInstall against an installed table', () => {
  it('re-apply after a policy edit and a dropped domain set (golden)', async () => {
    const handle = await installed();
    const edited = { ...webEgress, egress: webEgress.egress!.slice(1) }; // no more domain rule
    const state = baseState({ domainSets: [githubSet], policies: [baseState().policies[0]!, edited] });
    const plan = planInstall(desiredTable(state, table), await handle.listTable(table, { elements: false }));
    expect(plan.replacedChains).toEqual(['pol_web-egress_egress']);
    expect(plan.deletedSets).toEqual(['ds_3c4d_v4', 'ds_3c4d_v6']);
    expect(plan.addedSets).toEqual([]);
    golden('reapply.txt', sortedOperationLines(plan.transaction));
    await handle.apply(plan.transaction); // and the kernel-like fake accepts it
  });

  it('orders the document: flushes, then additions, then rules, then deletions', async () => {
    const handle = await installed();
    const [web, node, idle] = baseState().endpoints;
    const state = baseState({ endpoints: [{ ...web!, egressPolicies: [] }, node!, idle!] });
    const plan = planInstall(desiredTable(state, table), await handle.listTable(table));
    const verbs = plan.transaction.operations.map((op) => `${op.verb} ${op.object.kind}`);
    expect(verbs.indexOf('delete chain')).toBeGreaterThan(verbs.lastIndexOf('add rule'));
    expect(verbs.lastIndexOf('flush chain')).toBeLessThan(verbs.indexOf('add rule'));
    // the endpoint chain, and the base chains left without an endpoint to dispatch
    expect(plan.deletedChains).toEqual(['ep_web_egress', 'forward_egress', 'input_egress']);
    await handle.apply(plan.transaction);
  });

  it('puts back a chain whose rules were changed behind its back', async () => {
    const handle = await installed();
    await handle.apply(
      new NftTransaction().add({
        kind: 'rule',
        rule: { table, chain: 'forward_egress', expr: [{ accept: null }] },
      }),
    );
    const plan = planInstall(desiredTable(baseState(), table), await handle.listTable(table));
    expect(plan.replacedChains).toEqual(['forward_egress']);
  });
});
