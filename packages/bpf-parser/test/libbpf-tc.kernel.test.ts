// tc clsact attach/detach on the real kernel: a veth pair between two fresh network
// namespaces; the attaching code runs in a child process inside the first namespace,
// because tc acts on the network namespace of the calling process.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isNotFound } from '@dnsplane/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BpfObjectSpec, attachTc, type BpfObject } from '../src/libbpf.js';

const fixtures = fileURLToPath(new URL('./bpf-fixtures/', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const testObject = join(fixtures, 'loader_test.o');

const suffix = randomBytes(3).toString('hex');
const nsA = `dnsplane-tc-a-${suffix}`;
const nsB = `dnsplane-tc-b-${suffix}`;
const vethA = `dpta${suffix}`;
const vethB = `dptb${suffix}`;
const addressA = '198.18.0.1';
const addressB = '198.18.0.2';

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

describe('tc attach/detach', () => {
  let namespacesUp = false;

  beforeAll(() => {
    execFileSync('make', ['-s', '-C', fixtures], { stdio: 'inherit' });
    ip('netns', 'add', nsA);
    ip('netns', 'add', nsB);
    ip('link', 'add', vethA, 'netns', nsA, 'type', 'veth', 'peer', 'name', vethB, 'netns', nsB);
    ip('-n', nsA, 'addr', 'add', `${addressA}/30`, 'dev', vethA);
    ip('-n', nsB, 'addr', 'add', `${addressB}/30`, 'dev', vethB);
    ip('-n', nsA, 'link', 'set', vethA, 'up');
    ip('-n', nsB, 'link', 'set', vethB, 'up');
    namespacesUp = true;
  });

  afterAll(() => {
    for (const ns of [nsA, nsB]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  });

  it('attaches in the namespace of the calling process, counts real packets, detaches', () => {
    expect(namespacesUp).toBe(true);
    const child = spawnSync(
      'ip',
      ['netns', 'exec', nsA, process.execPath, '--import', 'tsx', join(fixtures, 'tc-child.ts'), testObject, vethA, nsB, addressA],
      { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 },
    );
    if (child.status !== 0) throw new Error(`tc child failed (${child.status}): ${child.stderr}`);
    const report = JSON.parse(child.stdout.trim()) as Record<string, unknown>;

    expect(report['queryBefore']).toBeNull();
    const attached = report['attached'] as { priority: number; handle: number; progId: number };
    expect(attached).toMatchObject({ ifname: vethA, direction: 'ingress', priority: 7, handle: 3 });
    expect(attached.progId).toBeGreaterThan(0);
    expect(report['queryAttached']).toBe(attached.progId);
    expect(report['filtersAttached']).toMatch(/tc_count/);
    expect(report['filtersAttached']).toMatch(/direct-action/);
    expect(report['attachAgain']).toBe('KernelError:17'); // EEXIST without replace
    expect(report['replace']).toBe('none');
    expect(report['curlExits']).toEqual([7, 7, 7]); // connection refused: the SYN got there
    expect(report['hits']).toBeGreaterThanOrEqual(3);
    expect(report['queryDetached']).toBeNull();
    expect(report['filtersDetached']).not.toMatch(/tc_count/);
    expect(report['detachAgain']).toBe('NotFoundError');
    expect((report['egressAttached'] as { progId: number }).progId).toBeGreaterThan(0);
    expect(report['egressQuery']).toBe((report['egressAttached'] as { progId: number }).progId);
    expect(report['egressDetached']).toBeNull();
  });

  it('does not see interfaces of other namespaces: NotFoundError', () => {
    let object: BpfObject | undefined;
    let caught: unknown;
    try {
      object = BpfObjectSpec.open(testObject).load();
      attachTc({ ifname: vethA, direction: 'ingress', program: object.program('tc_count') });
    } catch (error) {
      caught = error;
    } finally {
      object?.close();
    }
    expect(isNotFound(caught)).toBe(true);
  });

  it('validates direction, priority and interface name before calling the kernel', () => {
    const object = BpfObjectSpec.open(testObject).load();
    try {
      const program = object.program('tc_count');
      expect(() => attachTc({ ifname: 'x'.repeat(16), direction: 'ingress', program })).toThrow(/1 to 15/);
      expect(() => attachTc({ ifname: 'lo', direction: 'ingress', program, priority: 0 })).toThrow(/priority/);
      expect(() =>
        attachTc({ ifname: 'lo', direction: 'sideways' as unknown as 'ingress', program }),
      ).toThrow(/direction/);
    } finally {
      object.close();
    }
  });
});
