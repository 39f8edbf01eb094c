// bench:enforce (c): scale on nftables — 1,000 policies holding 10,000 domain patterns and
// 100,000 learned addresses restored from the state file: time from start to applied, re-apply
// time after an edit, agent RSS. Target: full apply < 2 s.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile, loadInputs, LearnedStore, systemClock, type LearnedEntry } from '@dnsplane/core';
import { waitFor } from '../test/lab/wait.js';
import { BenchAgent, endpointDoc, fmt, status, withLab } from './enforce-agent.js';

export const TARGET_APPLY_MS = 2000;

export interface ScaleFigures {
  readonly policies: number;
  readonly patterns: number;
  readonly learned: number;
  readonly startToAppliedMs: number;
  readonly reapplyMs: number;
  readonly rssMiB: number;
  readonly learnedInForce: number;
}


export async function scaleFigures(): Promise<ScaleFigures> {
  const POLICIES = 1000;
  const PER_POLICY = 10;
  const LEARNED = 100_000;
  return withLab(1, async (lab) => {
    const agent = new BenchAgent(lab, 'nftables');
    try {
      agent.writeConfig();
      const policy = (i: number, suffix: string): Record<string, unknown> => ({
        kind: 'Policy',
        metadata: { name: `p${i}` },
        spec: {
          order: i,
          selector: 'app == "bench"',
          types: ['Egress'],
          egress: [
            {
              action: 'Allow',
              protocol: 'TCP',
              destination: { domains: Array.from({ length: PER_POLICY }, (_, j) => `s${j}.p${i}${suffix}.scale.test`), ports: [443] },
            },
          ],
        },
      });
      agent.writeResource('endpoints.yaml', [endpointDoc(lab)]);
      for (let i = 0; i < POLICIES; i += 1) agent.writeResource(`p${i}.yaml`, [policy(i, '')]);
      // 100,000 learned addresses spread over the 1,000 domain sets, restored at start.
      process.stderr.write('  compiling for the state file…\n');
      const state = compile(await loadInputs(agent.configPath));
      process.stderr.write(`  ${state.domainSets.length} domain sets; writing ${LEARNED} learned entries…\n`);
      const store = new LearnedStore(systemClock);
      const expiresAt = Date.now() + 3_600_000;
      const entries: LearnedEntry[] = [];
      for (let k = 0; k < LEARNED; k += 1) {
        const set = state.domainSets[k % state.domainSets.length]!;
        entries.push({ setId: set.id, family: 4, address: `198.${18 + ((k >> 16) & 1)}.${(k >> 8) & 255}.${k & 255}`, expiresAt });
      }
      store.recordAll(entries);
      writeFileSync(join(agent.directory, 'state.json'), store.serialize());
      process.stderr.write('  starting the agent…\n');
      const first = await agent.start(180_000);
      process.stderr.write(`  applied; waiting for the learned entries (${first.learned} so far)…\n`);
      const startToAppliedMs = Date.parse(first.lastApply!.at) - Date.parse(first.startedAt);
      const restored = await waitFor('learned entries to be restored', async () => {
        const view = await status(agent.socket);
        return view !== undefined && view.learned >= LEARNED * 0.99 ? view : undefined;
      }, { timeoutMs: 180_000 });
      process.stderr.write('  restored; editing one policy…\n');
      // Re-apply: one policy edited.
      const before = restored.lastApply!.at;
      const editedAt = Date.now();
      agent.writeResource('p0.yaml', [policy(0, 'x')]);
      const reapplied = await waitFor('the edit to apply', async () => {
        const view = await status(agent.socket);
        return view?.lastApply !== undefined && view.lastApply.at !== before ? view : undefined;
      }, { timeoutMs: 120_000 });
      process.stderr.write('  re-applied\n');
      const reapplyMs = Date.parse(reapplied.lastApply!.at) - editedAt;
      const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${reapplied.pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
      return {
        policies: POLICIES,
        patterns: POLICIES * PER_POLICY,
        learned: LEARNED,
        startToAppliedMs,
        reapplyMs,
        rssMiB: rssKiB / 1024,
        learnedInForce: reapplied.learned,
      };
    } finally {
      await agent.stop();
    }
  });
}


export function formatScale(scale: ScaleFigures | { error: string }): string[] {
  if ('error' in scale) return [`scale: ERROR ${scale.error}`];
  return [
    `scale (nftables): ${scale.policies} policies, ${scale.patterns} patterns, ${scale.learned} learned restored (${scale.learnedInForce} in force)`,
    `  start → applied ${fmt(scale.startToAppliedMs, 0)} ms (target < ${TARGET_APPLY_MS} ms: ${scale.startToAppliedMs < TARGET_APPLY_MS ? 'met' : 'MISSED'}); re-apply after one edit ${fmt(scale.reapplyMs, 0)} ms (incl. 200 ms debounce); agent RSS ${fmt(scale.rssMiB, 1)} MiB`,
  ];
}
