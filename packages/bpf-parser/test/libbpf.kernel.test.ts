// The libbpf loader on the real kernel: load, globals, test runs, maps, pins, ring buffer,
// verifier errors, fd hygiene. Needs root, bpffs at /sys/fs/bpf and clang.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isKernelError, isNotFound } from '@dnsplane/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BpfMap,
  BpfObjectSpec,
  BpfProgram,
  DEFAULT_PIN_ROOT,
  MapType,
  ProgramType,
  RingBufferConsumer,
  ktimeNs,
  makePinFolder,
  possibleCpus,
  unpin,
  type BpfObject,
} from '../src/libbpf.js';

const fixtures = fileURLToPath(new URL('./bpf-fixtures/', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const testObject = join(fixtures, 'loader_test.o');
const rejectedObject = join(fixtures, 'verifier_reject.o');
const pinnedByNameObject = join(fixtures, 'pinned_by_name.o');
const parserObject = fileURLToPath(new URL('../bpf/dnsplane.bpf.o', import.meta.url));

const ETH_HLEN = 14;

/**
 * An IPv4 frame: Ethernet header (type 0x0800) and `payloadLength` bytes after it. The kernel
 * refuses (EINVAL) a test run whose IPv4 frame holds less than a 20-byte IP header.
 */
function frame(payloadLength: number): Buffer {
  const data = Buffer.alloc(ETH_HLEN + payloadLength);
  data.writeUInt16BE(0x0800, 12);
  return data;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
};

function loadWithMagic(magic: number): BpfObject {
  const spec = BpfObjectSpec.open(testObject);
  spec.setGlobal('magic', u32(magic));
  return spec.load();
}

function sumPerCpu(map: BpfMap, key: Buffer): number {
  const slots = map.lookupPerCpu(key) ?? [];
  return slots.reduce((sum, slot) => sum + slot.readUInt32LE(0), 0);
}

/** Resolves once `condition()` holds, checked every few ms; rejects after the deadline. */
async function until(condition: () => boolean, deadlineMs: number): Promise<void> {
  const end = performance.now() + deadlineMs;
  while (!condition()) {
    if (performance.now() > end) throw new Error(`condition not met within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Resolves when `condition()` holds, checked whenever `wake` is called; rejects after the deadline. */
function waitFor(condition: () => boolean, deadlineMs: number): { promise: Promise<void>; wake: () => void } {
  let wake = (): void => {};
  const promise = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`condition not met within ${deadlineMs} ms`)), deadlineMs);
    wake = () => {
      if (condition()) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
  return { promise, wake };
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

beforeAll(() => {
  execFileSync('make', ['-s', '-C', fixtures], { stdio: 'inherit' });
});

describe('BpfObjectSpec', () => {
  const objects: BpfObject[] = [];
  afterEach(() => {
    for (const o of objects.splice(0)) o.close();
  });

  it('lists the maps and programs of an object before load', () => {
    const spec = BpfObjectSpec.open(testObject);
    try {
      const maps = Object.fromEntries(spec.maps.map((m) => [m.name, m]));
      expect(maps['kv']).toMatchObject({ type: MapType.hash, keySize: 4, valueSize: 8, maxEntries: 1024, internal: false });
      expect(maps['runs']).toMatchObject({ type: MapType.percpuArray, valueSize: 4 });
      expect(maps['events']).toMatchObject({ type: MapType.ringbuf });
      expect(spec.maps.some((m) => m.internal && m.name.endsWith('.rodata'))).toBe(true);
      expect(spec.programs).toEqual(
        expect.arrayContaining([
          { name: 'socket_magic', section: 'socket', type: ProgramType.socketFilter, autoload: true },
          { name: 'tc_magic', section: 'tc', type: ProgramType.schedCls, autoload: true },
        ]),
      );
    } finally {
      spec.close();
    }
  });

  it('sets a .rodata constant per instance, seen by socket-filter and tc test runs', () => {
    const a = loadWithMagic(0xabcd);
    const b = loadWithMagic(7);
    objects.push(a, b);
    const data = frame(50);
    expect(a.program('socket_magic').testRun({ data }).retval).toBe(0xabcd);
    expect(a.program('tc_magic').testRun({ data }).retval).toBe(0xabcd);
    expect(b.program('socket_magic').testRun({ data }).retval).toBe(7);
    expect(b.program('tc_magic').testRun({ data }).retval).toBe(7);
  });

  it('loads only the programs asked for; the others are absent from the loaded object', () => {
    const spec = BpfObjectSpec.open(testObject);
    expect(() => spec.loadOnly(['no_such_program'])).toThrow(/no program named no_such_program/);
    spec.setGlobal('magic', u32(11));
    spec.loadOnly(['tc_magic']);
    expect(spec.programs.filter((p) => p.autoload).map((p) => p.name)).toEqual(['tc_magic']);
    const o = spec.load();
    objects.push(o);
    expect(o.programs().map((p) => p.name)).toEqual(['tc_magic']);
    expect(o.program('tc_magic').testRun({ data: frame(50) }).retval).toBe(11);
    let caught: unknown;
    try {
      o.program('socket_magic');
    } catch (error) {
      caught = error;
    }
    expect(isNotFound(caught)).toBe(true);
    expect(String(caught)).toMatch(/not loaded/);
    // The maps the program uses, by kernel id and name.
    const used = o.program('tc_magic').usedMaps();
    expect(used.map((m) => m.name)).toEqual(expect.arrayContaining(['runs', 'events']));
    expect(used.find((m) => m.name === 'runs')?.id).toBe(o.map('runs').id);
    expect(used.map((m) => m.name)).not.toContain('kv');
    const again = BpfObjectSpec.open(testObject);
    again.setAutoload('socket_magic', false);
    expect(() => again.setAutoload('nope', false)).toThrow(/no program named nope/);
    const other = again.load();
    objects.push(other);
    expect(other.programs().map((p) => p.name).sort()).toEqual(['tc_count', 'tc_magic']);
    expect(other.program('tc_magic').id).not.toBe(o.program('tc_magic').id);
  });

  it('loadAsync verifies on a worker thread: the event loop goes on; a rejection is the same KernelError', async () => {
    const spec = BpfObjectSpec.open(parserObject, { pinRoot: null });
    spec.loadOnly(['dnsplane_parse_tc']);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = performance.now();
    let loaded: BpfObject;
    try {
      loaded = await spec.loadAsync();
    } finally {
      clearInterval(timer);
    }
    objects.push(loaded);
    const elapsed = performance.now() - started;
    // the parser takes the verifier ~1 s or more: the 5 ms timer ran during it
    expect(ticks).toBeGreaterThan(Math.min(10, elapsed / 50));
    expect(loaded.program('dnsplane_parse_tc').testRun({ data: frame(50) }).retval | 0).toBe(-1);
    expect(() => spec.load()).toThrow(/already loaded/);

    let caught: unknown;
    try {
      await BpfObjectSpec.open(rejectedObject).loadAsync();
    } catch (error) {
      caught = error;
    }
    expect(isKernelError(caught)).toBe(true);
    if (!isKernelError(caught)) return;
    expect(caught.errno).toBe(13);
    expect(caught.detail).toContain('missing_null_check');
  });

  it('pin folders: created (with parents) in bpffs; elsewhere a NotSupportedError naming the folder, nothing created', () => {
    const dir = `/sys/fs/bpf/dnsplane-test-folder-${randomBytes(4).toString('hex')}`;
    try {
      makePinFolder(join(dir, 'a', 'b'));
      expect(existsSync(join(dir, 'a', 'b'))).toBe(true);
      makePinFolder(join(dir, 'a', 'b')); // already there
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // e.g. a fresh sysfs without bpffs (ip netns exec), here /tmp: refused before any mkdir
    const outside = `/tmp/dnsplane-test-not-bpffs-${randomBytes(4).toString('hex')}/pins`;
    expect(() => makePinFolder(outside)).toThrow(/pin folder .*not-bpffs.* is not on a bpf filesystem/);
    expect(existsSync(dirname(outside))).toBe(false);
    const spec = BpfObjectSpec.open(pinnedByNameObject);
    spec.reuseMaps(outside);
    expect(() => spec.load()).toThrow(/not on a bpf filesystem/);
  });

  it('a load the verifier refuses leaves no map pinned (libbpf unpins what that load pinned)', () => {
    const dir = `/sys/fs/bpf/dnsplane-test-refused-${randomBytes(4).toString('hex')}`;
    mkdirSync(dir, { recursive: true });
    try {
      const spec = BpfObjectSpec.open(rejectedObject);
      spec.reuseMaps(dir);
      expect(spec.maps.find((m) => m.name === 'values')?.pinPath).toBe(join(dir, 'values'));
      expect(() => spec.load()).toThrow(/Permission denied/);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a load goes through while signals keep arriving (the verifier gives up on a pending signal; libbpf retries only five times)', async () => {
    // Another process signals this one every millisecond, as a profiler's SIGPROF or a stream
    // of exiting children would. Process-directed signals go to the thread that runs, here the
    // one in the verifier: without the addon holding them back, every attempt ends in EAGAIN.
    let handled = 0;
    const onSignal = (): void => {
      handled++;
    };
    process.on('SIGUSR2', onSignal);
    const signaller = spawn(
      process.execPath,
      [
        '-e',
        `let sent = 0;
         setInterval(() => { try { process.kill(${process.pid}, 'SIGUSR2'); sent++; } catch { process.exit(0); } }, 1);
         process.on('message', () => process.send(sent));`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
    );
    const sentSoFar = (): Promise<number> =>
      new Promise((resolve) => {
        signaller.once('message', (n) => resolve(Number(n)));
        signaller.send('count');
      });
    try {
      await until(() => handled > 0, 10_000);
      const before = await sentSoFar();
      const spec = BpfObjectSpec.open(parserObject, { pinRoot: null });
      spec.loadOnly(['dnsplane_parse_tc']);
      const started = performance.now();
      objects.push(spec.load()); // on this thread, the one the signals are sent to
      const elapsed = performance.now() - started;
      const during = (await sentSoFar()) - before;
      expect(during).toBeGreaterThan(Math.min(20, elapsed / 10)); // they did keep coming
      await until(() => handled > 1, 10_000); // and were delivered after the load
      const again = BpfObjectSpec.open(parserObject, { pinRoot: null });
      again.loadOnly(['dnsplane_parse_tc']);
      objects.push(await again.loadAsync());
    } finally {
      const exited = new Promise((resolve) => signaller.once('exit', resolve));
      signaller.kill();
      await exited;
      await new Promise((resolve) => setImmediate(resolve));
      process.off('SIGUSR2', onSignal);
    }
  });

  it('loadAsync({ nice }) verifies at that nice value on its worker thread and gives the thread its own value back', async () => {
    const niceOf = (tid: string): number | undefined => {
      try {
        // Fields after the parenthesised name: state is field 3, nice field 19.
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      } catch {
        return undefined; // the thread ended meanwhile
      }
    };
    const nices = (): number[] => readdirSync('/proc/self/task').map(niceOf).filter((n): n is number => n !== undefined);
    const before = nices();
    const spec = BpfObjectSpec.open(parserObject, { pinRoot: null });
    spec.loadOnly(['dnsplane_parse_tc']);
    const seen = new Set<number>();
    const timer = setInterval(() => nices().forEach((n) => seen.add(n)), 5);
    try {
      objects.push(await spec.loadAsync({ nice: -7 }));
    } finally {
      clearInterval(timer);
    }
    expect(seen).toContain(-7); // the worker thread, while the verifier ran (~1 s)
    expect(before).not.toContain(-7);
    expect(nices()).not.toContain(-7); // and back to its own value
    await expect(BpfObjectSpec.open(parserObject, { pinRoot: null }).loadAsync({ nice: -21 })).rejects.toThrow(RangeError);
  });

  it('rejects unknown globals, wrong sizes and a second load', () => {
    const spec = BpfObjectSpec.open(testObject);
    let caught: unknown;
    try {
      spec.setGlobal('no_such_global', u32(1));
    } catch (error) {
      caught = error;
    }
    expect(isNotFound(caught)).toBe(true);
    // A map definition is a BTF variable too, but not a global.
    expect(() => spec.setGlobal('kv', Buffer.alloc(32))).toThrow(/no such global/);
    expect(() => spec.setGlobal('magic', Buffer.alloc(8))).toThrow(RangeError);
    objects.push(spec.load());
    expect(() => spec.load()).toThrow(/already loaded/);
  });

  it('reports a missing object file as NotFoundError', () => {
    let caught: unknown;
    try {
      BpfObjectSpec.open(join(fixtures, 'does-not-exist.o'));
    } catch (error) {
      caught = error;
    }
    expect(isNotFound(caught)).toBe(true);
  });

  it('surfaces a verifier rejection as KernelError with errno and the verifier log', () => {
    const spec = BpfObjectSpec.open(rejectedObject);
    let caught: unknown;
    try {
      spec.load();
    } catch (error) {
      caught = error;
    }
    expect(isKernelError(caught)).toBe(true);
    if (!isKernelError(caught)) return;
    expect(caught.errno).toBe(13); // EACCES: the verifier said no
    expect(caught.detail).toContain("invalid mem access 'map_value_or_null'");
    expect(caught.detail).toContain('missing_null_check');
  });

  it('frees every fd on close, also after a failed load', () => {
    const before = openFds();
    for (let i = 0; i < 3; i++) {
      const o = loadWithMagic(i);
      o.program('socket_magic').testRun({ data: frame(20) });
      const consumer = new RingBufferConsumer(o.map('events'), () => {});
      consumer.close();
      o.close();
      expect(() => BpfObjectSpec.open(rejectedObject).load()).toThrow();
      const pinnedLess = BpfObjectSpec.open(testObject);
      pinnedLess.close();
    }
    expect(openFds()).toBe(before);
  });

  it('keeps an object loaded while one of its programs is referenced (garbage collection)', () => {
    const child = spawnSync(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', join(fixtures, 'gc-child.ts'), testObject],
      { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 },
    );
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe(String(0x600d));
  });

  it('refuses to use programs and maps of a closed object', () => {
    const o = loadWithMagic(1);
    const program = o.program('socket_magic');
    const map = o.map('kv');
    o.close();
    expect(() => program.testRun({ data: frame(20) })).toThrow(/closed/);
    expect(() => map.lookup(u32(1))).toThrow(/closed/);
  });
});

describe('testRun', () => {
  let object: BpfObject;
  beforeAll(() => {
    object = loadWithMagic(42);
  });
  afterAll(() => object.close());

  it('runs a socket filter on data whose Ethernet header the kernel strips', async () => {
    const records: Buffer[] = [];
    const wait = waitFor(() => records.length >= 1, 5_000);
    const consumer = new RingBufferConsumer(object.map('events'), (r) => {
      records.push(r);
      wait.wake();
    });
    try {
      object.program('socket_magic').testRun({ data: frame(60) });
      await wait.promise;
    } finally {
      consumer.close();
    }
    // struct event { u32 magic; u32 len; u64 ktime; }: skb->len excludes the Ethernet header.
    expect(records[0]?.readUInt32LE(4)).toBe(60);
  });

  it('repeats a run and reports the average duration', () => {
    const runs = object.map('runs');
    const before = sumPerCpu(runs, u32(1));
    const result = object.program('tc_magic').testRun({ data: frame(40), repeat: 1000 });
    expect(result.retval).toBe(42);
    expect(result.durationNs).toBeGreaterThan(0);
    expect(result.data.length).toBe(ETH_HLEN + 40);
    expect(sumPerCpu(runs, u32(1)) - before).toBe(1000);
  });

  it('rejects a bad repeat count before calling the kernel', () => {
    expect(() => object.program('tc_magic').testRun({ data: frame(20), repeat: 0 })).toThrow(RangeError);
  });

  it('reports a kernel refusal (no Ethernet header, or a cut IPv4 header) as KernelError', () => {
    for (const data of [Buffer.alloc(4), frame(19)]) {
      let caught: unknown;
      try {
        object.program('socket_magic').testRun({ data });
      } catch (error) {
        caught = error;
      }
      expect(isKernelError(caught) && caught.errno === 22).toBe(true); // EINVAL
    }
  });
});

describe('BpfMap', () => {
  let object: BpfObject;
  beforeAll(() => {
    object = loadWithMagic(1);
  });
  afterAll(() => object.close());

  it('updates, looks up and deletes, honouring noexist/exist', () => {
    const kv = object.map('kv');
    expect(kv.lookup(u32(5))).toBeUndefined();
    kv.update(u32(5), u64(500n));
    expect(kv.lookup(u32(5))?.readBigUInt64LE(0)).toBe(500n);
    let caught: unknown;
    try {
      kv.update(u32(5), u64(1n), 'noexist');
    } catch (error) {
      caught = error;
    }
    expect(isKernelError(caught) && caught.errno === 17).toBe(true); // EEXIST
    kv.update(u32(5), u64(501n), 'exist');
    expect(kv.lookup(u32(5))?.readBigUInt64LE(0)).toBe(501n);
    expect(kv.delete(u32(5))).toBe(true);
    expect(kv.delete(u32(5))).toBe(false);
    expect(() => kv.update(u32(6), u64(1n), 'exist')).toThrow();
    expect(kv.lookup(u32(6))).toBeUndefined();
  });

  it('checks key and value sizes before calling the kernel', () => {
    const kv = object.map('kv');
    expect(() => kv.lookup(Buffer.alloc(8))).toThrow(/key has 8 bytes/);
    expect(() => kv.update(u32(1), Buffer.alloc(4))).toThrow(/value has 4 bytes/);
  });

  it('iterates keys and entries, and writes/reads/deletes in batches', () => {
    const kv = object.map('kv');
    expect(kv.isEmpty()).toBe(true);
    expect(kv.batchKeys()).toEqual([]);
    const keys = Array.from({ length: 600 }, (_, i) => u32(1000 + i));
    kv.updateBatch(
      keys,
      keys.map((k) => u64(BigInt(k.readUInt32LE(0)) * 3n)),
    );
    expect(kv.isEmpty()).toBe(false);
    expect(kv.batchKeys().map((k) => k.readUInt32LE(0)).sort((a, b) => a - b)).toEqual(keys.map((k) => k.readUInt32LE(0)));
    const entries = kv.entries();
    expect(entries).toHaveLength(600);
    for (const [key, value] of entries) expect(value.readBigUInt64LE(0)).toBe(BigInt(key.readUInt32LE(0)) * 3n);
    const iterated = kv.keys().map((k) => k.readUInt32LE(0)).sort((a, b) => a - b);
    expect(iterated).toEqual(keys.map((k) => k.readUInt32LE(0)));
    // forEachEntry: the same entries, read at offsets into the batch
    const visited: Array<[number, bigint]> = [];
    kv.forEachEntry((keyBytes, keyAt, valueBytes, valueAt) => visited.push([keyBytes.readUInt32LE(keyAt), valueBytes.readBigUInt64LE(valueAt)]));
    expect(visited).toEqual(entries.map(([key, value]) => [key.readUInt32LE(0), value.readBigUInt64LE(0)]));
    kv.deleteBatch(keys.slice(0, 500));
    expect(kv.keys()).toHaveLength(100);
    expect(() => kv.updateBatch([u32(1)], [])).toThrow(/1 keys but 0 values/);
    kv.deleteBatch(keys.slice(500));
    expect(kv.entries()).toEqual([]);
    // The kernel's batch update takes no per-element flags: honoured one key at a time.
    kv.updateBatch([u32(1), u32(2)], [u64(1n), u64(2n)], 'noexist');
    expect(() => kv.updateBatch([u32(3), u32(2)], [u64(3n), u64(2n)], 'noexist')).toThrow();
    expect(kv.lookup(u32(3))?.readBigUInt64LE(0)).toBe(3n);
    let caught: unknown;
    try {
      kv.deleteBatch([u32(1), u32(99)]);
    } catch (error) {
      caught = error;
    }
    expect(isNotFound(caught)).toBe(true);
    kv.deleteBatch(kv.keys());
    expect(kv.keys()).toEqual([]);
  });

  it('handles array maps in batches (every index is present)', () => {
    const slots = object.map('slots');
    slots.updateBatch([u32(2), u32(3)], [u64(20n), u64(30n)]);
    const entries = slots.entries();
    expect(entries).toHaveLength(8);
    expect(entries.find(([k]) => k.readUInt32LE(0) === 3)?.[1].readBigUInt64LE(0)).toBe(30n);
    let visits = 0;
    slots.forEachEntry((keyBytes, keyAt, valueBytes, valueAt) => {
      visits++;
      if (keyBytes.readUInt32LE(keyAt) === 2) expect(valueBytes.readBigUInt64LE(valueAt)).toBe(20n);
    });
    expect(visits).toBe(8);
    expect(slots.isEmpty()).toBe(false);
    expect(slots.batchKeys()).toHaveLength(8);
  });

  it('reads and writes per-CPU values with one 8-byte slot per possible CPU', () => {
    const runs = object.map('runs');
    const cpus = possibleCpus();
    expect(cpus).toBeGreaterThanOrEqual(1);
    expect(runs.perCpu).toBe(true);
    expect(runs.valueLength).toBe(8 * cpus);
    const value = Buffer.alloc(runs.valueLength);
    for (let cpu = 0; cpu < cpus; cpu++) value.writeUInt32LE(cpu + 10, cpu * 8);
    runs.update(u32(3), value);
    const slots = runs.lookupPerCpu(u32(3));
    expect(slots?.map((s) => s.readUInt32LE(0))).toEqual(Array.from({ length: cpus }, (_, cpu) => cpu + 10));
    runs.updateBatch([u32(2)], [value]);
    const entries = runs.entries();
    expect(entries).toHaveLength(4);
    expect(entries.every(([, v]) => v.length === 8 * cpus)).toBe(true);
  });

  it('prefault reads an array once per page-sized stride and every per-CPU element, other maps not; nothing changes', () => {
    const slots = object.map('slots');
    slots.update(u32(7), u64(77n));
    const before = slots.entries();
    expect(slots.prefault()).toBe(1); // 8 × 8 bytes: one page
    expect(slots.entries()).toEqual(before);
    expect(object.map('runs').prefault()).toBe(4);
    expect(object.map('kv').prefault()).toBe(0);
    expect(object.map('events').prefault()).toBe(0);
    expect(object.prefaultMaps()).toBe(object.maps().reduce((sum, map) => sum + map.prefault(), 0));
  });

  it('prefault of an array whose values straddle pages: a read at least every 4,096 bytes', () => {
    const spec = BpfObjectSpec.open(parserObject, { pinRoot: null });
    spec.loadOnly(['dnsplane_parse_tc']);
    const parser = spec.load();
    try {
      const queries = parser.map('dnsp_queries');
      expect(queries.valueSize).toBe(192); // 4 ways of 48 bytes
      const stride = Math.floor(4096 / 192); // 21 sets: 4,032 bytes between reads, each 192 long
      expect(queries.prefault()).toBe(Math.ceil(queries.maxEntries / stride));
    } finally {
      parser.close();
    }
  });

  it('relates bpf_ktime_get_ns to ktimeNs (both CLOCK_MONOTONIC)', async () => {
    const records: Buffer[] = [];
    const wait = waitFor(() => records.length >= 1, 5_000);
    const consumer = new RingBufferConsumer(object.map('events'), (r) => {
      records.push(r);
      wait.wake();
    });
    const before = ktimeNs();
    try {
      object.program('socket_magic').testRun({ data: frame(20) });
      const after = ktimeNs();
      await wait.promise;
      const stamped = records[0]?.readBigUInt64LE(8) ?? 0n;
      expect(stamped).toBeGreaterThanOrEqual(before);
      expect(stamped).toBeLessThanOrEqual(after);
    } finally {
      consumer.close();
    }
    expect(ktimeNs()).toBeLessThanOrEqual(process.hrtime.bigint());
  });
});

describe('RingBufferConsumer', () => {
  let object: BpfObject;
  beforeAll(() => {
    object = loadWithMagic(0x5eed);
  });
  afterAll(() => object.close());

  it('delivers every record to the callback from the event loop', async () => {
    const records: Buffer[] = [];
    const wait = waitFor(() => records.length >= 100, 5_000);
    const consumer = new RingBufferConsumer(object.map('events'), (r) => {
      records.push(r);
      wait.wake();
    });
    try {
      // 100 runs, 100 events (16 bytes + 8 header each: the 4 KiB ring holds them all).
      object.program('tc_magic').testRun({ data: frame(33), repeat: 100 });
      expect(records).toHaveLength(0); // nothing is delivered synchronously
      await wait.promise;
    } finally {
      consumer.close();
    }
    expect(records).toHaveLength(100);
    expect(records.every((r) => r.readUInt32LE(0) === 0x5eed && r.readUInt32LE(4) === ETH_HLEN + 33)).toBe(true);
  });

  it('stops delivering after close, even when closed from inside the callback', async () => {
    let delivered = 0;
    const consumer = new RingBufferConsumer(object.map('events'), () => {
      delivered++;
      consumer.close();
    });
    object.program('tc_magic').testRun({ data: frame(20), repeat: 5 });
    expect(consumer.consume()).toBeLessThanOrEqual(1);
    expect(delivered).toBe(1);
    // The remaining records stay in the ring for the next consumer.
    const rest: Buffer[] = [];
    const wait = waitFor(() => rest.length >= 4, 5_000);
    const next = new RingBufferConsumer(object.map('events'), (r) => {
      rest.push(r);
      wait.wake();
    });
    try {
      next.consume();
      await wait.promise;
    } finally {
      next.close();
    }
    expect(delivered).toBe(1);
  });

  it('routes a throwing callback to onError and keeps consuming', async () => {
    const errors: unknown[] = [];
    let seen = 0;
    const wait = waitFor(() => seen >= 3, 5_000);
    const consumer = new RingBufferConsumer(
      object.map('events'),
      () => {
        seen++;
        wait.wake();
        throw new Error('callback failed');
      },
      { onError: (e) => errors.push(e) },
    );
    try {
      object.program('tc_magic').testRun({ data: frame(20), repeat: 3 });
      await wait.promise;
    } finally {
      consumer.close();
    }
    expect(errors).toHaveLength(3);
  });

  it('accepts only ring buffer maps', () => {
    expect(() => new RingBufferConsumer(object.map('kv'), () => {})).toThrow(/not a ring buffer/);
  });
});

describe('pins', () => {
  const pinRoot = `/sys/fs/bpf/dnsplane-test-${randomBytes(4).toString('hex')}`;
  afterAll(() => {
    rmSync(pinRoot, { recursive: true, force: true });
  });

  it('pins maps on load, reuses them on the next load, and opens pinned maps and programs', () => {
    const first = BpfObjectSpec.open(testObject);
    first.setGlobal('magic', u32(11));
    first.reuseMaps(pinRoot);
    const a = first.load();
    try {
      for (const name of ['kv', 'slots', 'runs', 'events']) expect(existsSync(join(pinRoot, name))).toBe(true);
      expect(readdirSync(pinRoot).some((n) => n.includes('rodata'))).toBe(false);
      a.map('kv').update(u32(77), u64(7700n));
      a.program('socket_magic').pin(join(pinRoot, 'socket_magic'));
    } finally {
      a.close();
    }

    // A new instance with a different constant shares the pinned maps.
    const second = BpfObjectSpec.open(testObject);
    second.setGlobal('magic', u32(22));
    second.reuseMaps(pinRoot);
    const b = second.load();
    try {
      expect(b.map('kv').lookup(u32(77))?.readBigUInt64LE(0)).toBe(7700n);
      expect(b.program('socket_magic').testRun({ data: frame(20) }).retval).toBe(22);
    } finally {
      b.close();
    }

    const kv = BpfMap.fromPinned(join(pinRoot, 'kv'));
    const program = BpfProgram.fromPinned(join(pinRoot, 'socket_magic'));
    try {
      expect(kv).toMatchObject({ name: 'kv', type: MapType.hash, keySize: 4, valueSize: 8, maxEntries: 1024 });
      expect(kv.lookup(u32(77))?.readBigUInt64LE(0)).toBe(7700n);
      expect(program.type).toBe(ProgramType.socketFilter);
      expect(program.testRun({ data: frame(20) }).retval).toBe(11);
      const runs = BpfMap.fromPinned(join(pinRoot, 'runs'));
      expect(runs.perCpu).toBe(true);
      runs.close();
    } finally {
      kv.close();
      program.close();
    }
  });

  it('reuses only the named maps when asked', () => {
    const dir = join(pinRoot, 'only');
    const spec = BpfObjectSpec.open(testObject);
    spec.reuseMaps(dir, { maps: ['slots'] });
    spec.load().close();
    expect(readdirSync(dir)).toEqual(['slots']);
    expect(() => BpfObjectSpec.open(testObject).reuseMaps(dir, { maps: ['nope'] })).toThrow(/no map named nope/);
  });

  it('refuses to reuse an incompatible pin', () => {
    const dir = join(pinRoot, 'clash');
    const spec = BpfObjectSpec.open(testObject);
    spec.reuseMaps(dir, { maps: ['slots'] });
    spec.load().close();
    // "kv" (a hash map) would be given the pinned array "slots".
    const clash = BpfObjectSpec.open(testObject);
    clash.setMapPinPath('kv', join(dir, 'slots'));
    let caught: unknown;
    try {
      clash.load();
    } catch (error) {
      caught = error;
    }
    expect(isKernelError(caught)).toBe(true);
  });

  it('pins maps the object declares LIBBPF_PIN_BY_NAME under the pin root, by default the dnsplane one', () => {
    const defaults = BpfObjectSpec.open(pinnedByNameObject);
    try {
      const declared = defaults.maps.find((m) => m.name === 'shared_state');
      expect(declared?.pinPath).toBe(join(DEFAULT_PIN_ROOT, 'shared_state'));
      expect(defaults.maps.find((m) => m.name === 'private_state')?.pinPath).toBeUndefined();
    } finally {
      defaults.close();
    }

    const dir = join(pinRoot, 'declared');
    const first = BpfObjectSpec.open(pinnedByNameObject, { pinRoot: dir }).load();
    const second = BpfObjectSpec.open(pinnedByNameObject, { pinRoot: dir }).load();
    const isolated = BpfObjectSpec.open(pinnedByNameObject, { pinRoot: null }).load();
    try {
      expect(readdirSync(dir)).toEqual(['shared_state']);
      first.map('shared_state').update(u32(0), u64(5n));
      first.map('private_state').update(u32(0), u64(100n));
      const run = (o: BpfObject): number => o.program('read_state').testRun({ data: frame(20) }).retval;
      expect(run(first)).toBe(105);
      expect(run(second)).toBe(5); // shares the pinned map, not the private one
      expect(run(isolated)).toBe(0); // pinRoot null: its own fresh maps
    } finally {
      first.close();
      second.close();
      isolated.close();
    }
  });

  it('reports missing pins as NotFoundError and unpins', () => {
    const path = join(pinRoot, 'kv');
    unpin(path);
    for (const open of [() => BpfMap.fromPinned(path), () => BpfProgram.fromPinned(path), () => unpin(path)]) {
      let caught: unknown;
      try {
        open();
      } catch (error) {
        caught = error;
      }
      expect(isNotFound(caught)).toBe(true);
    }
  });
});
