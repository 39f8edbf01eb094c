// More domain sets on one endpoint than mark bits, in a lab: 12 sets on the default 8-bit
// mask. The sets beyond the single bits get codes in a field at the top of the mask, so every
// set keeps the inline guarantee — the first SYN to a fresh address of any of them passes,
// without waiting for the mirror. Real resolver (the lab's Node client), real TCP, real kernel.
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FreshName, LabProcess } from '../../../test/lab/lab.js';
import { useLab } from '../../../test/lab/vitest-lab.js';
import { expectEveryFirstSynPasses } from '../../../test/lab/first-syn.js';
import { client1EgressPolicy, removeDriverLeftovers, writeDriverConfig } from './scripts/lab-config.js';

const SCRIPT = fileURLToPath(new URL('./scripts/run-driver.ts', import.meta.url));
const suffix = randomBytes(4).toString('hex');
const TABLE = `dnsplane_c${suffix}`;
const PIN_ROOT = `/sys/fs/bpf/dnsplane-c${suffix}`;
const SETS = 12;
const NAMES_PER_SET = 20;

describe('nftables: more domain sets on one endpoint than mark bits', () => {
  const lab = useLab({ clients: 1, freshNames: SETS * NAMES_PER_SET + 10 });
  let dir = '';
  let driver: LabProcess | undefined;
  let groups: FreshName[][] = [];
  let installed: Record<string, number> = {};

  beforeAll(async () => {
    const l = lab();
    dir = await mkdtemp(join(tmpdir(), 'dnsplane-nft-codes-'));
    const config = await writeDriverConfig(l, dir, { table: TABLE, pinRoot: PIN_ROOT });
    groups = Array.from({ length: SETS }, () => l.allocateFresh(NAMES_PER_SET));
    await writeFile(
      join(dir, 'policy.yaml'),
      // one rule, one domain set per group of exact names
      client1EgressPolicy(
        l,
        'many-sets',
        groups.flatMap((group) => ['    - action: Allow', '      protocol: TCP', `      destination: { domains: ${JSON.stringify(group.map((f) => f.name))}, ports: [80] }`]),
      ).join('\n'),
    );
    driver = l.startAgentProcess(['npx', 'tsx', SCRIPT, 'install', config], { name: `nft-codes-${Date.now()}` });
    const line = await driver.waitForOutput(/"event":"installed"/, 60_000);
    installed = (JSON.parse(line.slice(line.indexOf('{'))) as { counters: Record<string, number> }).counters;
  }, 90_000);

  // Whatever happened above: no table, no pins left behind.
  afterAll(() => removeDriverLeftovers(lab(), driver, { table: TABLE, pinRoot: PIN_ROOT, dir }), 60_000);

  it('every set is marked (4 bits and 8 codes), none relies on the mirror', async () => {
    expect(installed['mirror_only_sets']).toBe(0);
    const table = (await lab().exec('node', ['nft', 'list', 'table', 'inet', TABLE])).stdout;
    const codeRules = table.match(/meta mark & 0x00f00000 == 0x00[0-9a-f]{2}0000/g) ?? [];
    // 8 coded sets, a rule per family each
    expect(new Set(codeRules).size).toBe(8);
    expect(codeRules).toHaveLength(16);
  });

  it('a fresh address of every set: each first SYN passes (zero SYN retransmits)', async () => {
    // interleaved, so consecutive trials go to different sets
    const trials = Array.from({ length: NAMES_PER_SET }, (_, i) => groups.map((g) => ({ name: g[i]!.name, port: 80 }))).flat();
    await expectEveryFirstSynPasses(lab(), 'client1', trials);
  }, 120_000);
});
