// Uninstall: remove every kernel object dnsplane may have created, for every dataplane this
// build knows (not only the configured one), then the pin folder and — unless kept — the state.
// Each step is independent: a failure is reported and the others still run.
//
// Steps, in order:
//   1. each registered driver's remove() (iptables: once per backend, legacy and nft);
//   2. a sweep of tc: on every interface, bpf filters (ingress and egress) whose program is
//      pinned under the pin root or is named dnsp…/dnsplane…; then every clsact qdisc left
//      with no filter at all (the drivers create clsact when they attach and cannot tell later
//      whether they created it; an empty clsact does nothing, so removing it changes no
//      packet's fate — a clsact with anyone's filter stays);
//   3. ipsets named dnsplane… (none are created today; older builds or hand-made ones);
//   4. the pin folder `bpf.pinRoot` (every pinned program and map);
//   5. the state file and the dataplane marker (unless keepState).
import { readdir, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Logger } from 'pino';
import {
  IPTABLES_BACKENDS,
  isNotSupported,
  type DataplaneKind,
  type LoadedInputs,
  type ProcessRunner,
} from '@dnsplane/core';
import type { DataplaneProvider } from './container.js';
import { removeStateFiles } from './state-file.js';

export interface UninstallOptions {
  readonly inputs: LoadedInputs;
  readonly statePath: string;
  readonly kinds: readonly DataplaneKind[];
  readonly provider: DataplaneProvider;
  readonly runner: ProcessRunner;
  readonly logger: Logger;
  readonly keepState: boolean;
}

export interface UninstallStep {
  readonly step: string;
  readonly ok: boolean;
  readonly detail?: string;
}

export async function uninstall(options: UninstallOptions): Promise<UninstallStep[]> {
  const steps: UninstallStep[] = [];
  const record = async (step: string, work: () => Promise<string | undefined>): Promise<void> => {
    try {
      const detail = await work();
      steps.push({ step, ok: true, ...(detail === undefined ? {} : { detail }) });
    } catch (error) {
      if (isNotSupported(error)) {
        steps.push({ step, ok: true, detail: `skipped: ${error.message}` });
        return;
      }
      steps.push({ step, ok: false, detail: error instanceof Error ? error.message : String(error) });
      options.logger.warn({ event: 'uninstall_step_failed', step, err: error }, `uninstall: ${step} failed`);
    }
  };

  for (const kind of options.kinds) {
    for (const inputs of variantsOf(kind, options.inputs)) {
      const label = kind === 'iptables' ? `remove iptables (${inputs.config.iptables.backend})` : `remove ${kind}`;
      await record(label, async () => {
        const dataplane = options.provider(kind, inputs);
        try {
          await dataplane.remove();
        } finally {
          await dataplane.close().catch(() => undefined);
        }
        return undefined;
      });
    }
  }
  const pinRoot = options.inputs.config.bpf.pinRoot;
  await record('tc filters', () => sweepTc(options.runner, pinRoot));
  await record('ipsets', () => sweepIpsets(options.runner));
  await record(`pin folder ${pinRoot}`, async () => `${await removePinFolder(pinRoot)} pins removed`);
  if (!options.keepState) {
    await record(`state ${options.statePath}`, async () => {
      await removeStateFiles(options.statePath);
      return undefined;
    });
  }
  return steps;
}

/** The iptables driver removes only its resolved backend: ask both. */
function variantsOf(kind: DataplaneKind, inputs: LoadedInputs): LoadedInputs[] {
  if (kind !== 'iptables') return [inputs];
  return IPTABLES_BACKENDS.filter((b) => b !== 'auto').map((backend) => ({
    ...inputs,
    config: { ...inputs.config, iptables: { ...inputs.config.iptables, backend } },
  }));
}

const linkSchema = z.array(z.object({ ifname: z.string() }).loose());
const filterSchema = z.array(
  z
    .object({
      pref: z.number().optional(),
      kind: z.string().optional(),
      handle: z.string().optional(),
      options: z
        .object({
          handle: z.string().optional(),
          bpf_name: z.string().optional(),
          prog: z.object({ id: z.number().optional(), name: z.string().optional() }).loose().optional(),
        })
        .loose()
        .optional(),
    })
    .loose(),
);
const progSchema = z.array(z.object({ id: z.number(), name: z.string().optional(), pinned: z.array(z.string()).optional() }).loose());

const OUR_PROGRAM_NAME = /^(dnsp|dnsplane)/i;

async function run(runner: ProcessRunner, command: string, args: readonly string[]): Promise<string> {
  const result = await runner.run(command, args);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')}: ${result.stderr.trim() || `exit ${result.code}`}`);
  return result.stdout;
}

/** Ids of programs pinned under `pinRoot` (bpftool -f lists pin paths). */
async function pinnedProgramIds(runner: ProcessRunner, pinRoot: string): Promise<Set<number>> {
  const result = await runner.run('bpftool', ['-j', '-f', 'prog', 'show']);
  if (result.code !== 0) return new Set();
  const parsed = progSchema.safeParse(JSON.parse(result.stdout || '[]'));
  if (!parsed.success) return new Set();
  return new Set(parsed.data.filter((p) => (p.pinned ?? []).some((path) => path === pinRoot || path.startsWith(`${pinRoot}/`))).map((p) => p.id));
}

async function sweepTc(runner: ProcessRunner, pinRoot: string): Promise<string> {
  const ours = await pinnedProgramIds(runner, pinRoot);
  const links = linkSchema.parse(JSON.parse((await run(runner, 'ip', ['-j', 'link', 'show'])) || '[]'));
  let deleted = 0;
  const qdiscsRemoved: string[] = [];
  for (const { ifname } of links) {
    let touched = false;
    let left = 0;
    for (const direction of ['ingress', 'egress'] as const) {
      const listing = await runner.run('tc', ['-j', 'filter', 'show', 'dev', ifname, direction]);
      if (listing.code !== 0) continue; // no clsact here
      const filters = filterSchema.safeParse(JSON.parse(listing.stdout || '[]'));
      if (!filters.success) continue;
      const seen = new Set<string>();
      for (const filter of filters.data) {
        if (filter.kind !== 'bpf' || filter.options === undefined || filter.pref === undefined) continue;
        const id = filter.options.prog?.id;
        const name = filter.options.prog?.name ?? filter.options.bpf_name ?? '';
        const handle = filter.options.handle;
        const mine = (id !== undefined && ours.has(id)) || OUR_PROGRAM_NAME.test(name) || OUR_PROGRAM_NAME.test(filter.options.bpf_name ?? '');
        if (!mine) {
          left += 1;
          continue;
        }
        const key = `${filter.pref}/${handle ?? ''}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const args = ['filter', 'del', 'dev', ifname, direction, 'pref', String(filter.pref), ...(handle === undefined ? [] : ['handle', handle, 'bpf'])];
        const result = await runner.run('tc', args);
        if (result.code === 0) {
          deleted += 1;
          touched = true;
        }
      }
    }
    if (left === 0 && (touched || (await hasClsact(runner, ifname)))) {
      const remaining = await remainingFilters(runner, ifname);
      if (remaining === 0 && (await runner.run('tc', ['qdisc', 'del', 'dev', ifname, 'clsact'])).code === 0) qdiscsRemoved.push(ifname);
    }
  }
  return `${deleted} filters deleted${qdiscsRemoved.length > 0 ? `, clsact removed on ${qdiscsRemoved.join(', ')}` : ''}`;
}

async function hasClsact(runner: ProcessRunner, ifname: string): Promise<boolean> {
  const result = await runner.run('tc', ['qdisc', 'show', 'dev', ifname]);
  return result.code === 0 && /\bqdisc clsact\b/.test(result.stdout);
}

async function remainingFilters(runner: ProcessRunner, ifname: string): Promise<number> {
  let count = 0;
  for (const direction of ['ingress', 'egress']) {
    const listing = await runner.run('tc', ['-j', 'filter', 'show', 'dev', ifname, direction]);
    if (listing.code !== 0) continue;
    const filters = filterSchema.safeParse(JSON.parse(listing.stdout || '[]'));
    if (filters.success) count += filters.data.length;
  }
  return count;
}

async function sweepIpsets(runner: ProcessRunner): Promise<string> {
  const listing = await runner.run('ipset', ['list', '-n']);
  if (listing.code !== 0) return 'ipset not usable here; skipped';
  const names = listing.stdout.split('\n').map((l) => l.trim()).filter((n) => /^dnsplane/i.test(n));
  for (const name of names) await run(runner, 'ipset', ['destroy', name]);
  return `${names.length} ipsets destroyed`;
}

/** Unlinks every pin under `root` and the folders themselves; returns how many pins. */
async function removePinFolder(root: string): Promise<number> {
  const info = await stat(root).catch(() => undefined);
  if (!info) return 0;
  let count = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(path);
        await rmdir(path);
      } else {
        await unlink(path);
        count += 1;
      }
    }
  };
  await walk(root);
  await rm(root, { recursive: true, force: true });
  return count;
}
