// The typed TypeScript API over the libbpf addon (native/): open a BPF object as a spec,
// adjust globals and pins, load it, then work with its programs and maps, consume ring
// buffers on the event loop, test-run programs and attach tc classifiers.
//
// Every failure of a kernel call surfaces as KernelError (errno, libbpf/verifier log in
// `detail`); anything that is not there (pin, object file, map or program name, global,
// interface) as NotFoundError. The addon is loaded on first use, so importing this module
// never fails on a machine where it is not built yet.
import { existsSync, mkdirSync, statfsSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { KernelError, NotFoundError, NotSupportedError } from '@dnsplane/core';

/** Where dnsplane pins its programs and maps unless configured otherwise. */
export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/dnsplane';

// ---------------------------------------------------------------------------------------
// The addon's raw interface.

export interface NativeMapInfo {
  name: string;
  fd: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  internal?: boolean;
  pinPath?: string;
  pinned?: boolean;
}

interface NativeProgramInfo {
  name: string;
  section: string;
  type: number;
  /** -1 when the program was not loaded (autoload off). */
  fd: number;
  autoload: boolean;
}

export interface NativeObjectHandle {
  setGlobal(name: string, value: Uint8Array): void;
  setPinPath(mapName: string, path: string | null): void;
  setAutoload(programName: string, autoload: boolean): void;
  load(): void;
  loadAsync(nice?: number): Promise<void>;
  programs(): NativeProgramInfo[];
  maps(): NativeMapInfo[];
  close(): void;
}

interface NativeRingBuffer {
  consume(): number;
  close(): void;
  ref(): void;
  unref(): void;
}

interface NativeTestRunResult {
  retval: number;
  durationNs: number;
  data: Buffer;
  ctx?: Buffer;
}

interface NativeAddon {
  ObjectHandle: new (path: string, pinRoot: string) => NativeObjectHandle;
  RingBufferHandle: new (mapFd: number, onRecord: (record: Buffer) => void) => NativeRingBuffer;
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  closeFd(fd: number): void;
  mapInfo(fd: number): Omit<NativeMapInfo, 'fd'> & { id: number };
  progInfo(fd: number): { name: string; type: number; id: number; verifiedInstructions: number };
  progMaps(fd: number): Array<{ id: number; name: string }>;
  mapLookup(fd: number, key: Uint8Array, valueLength: number): Buffer | undefined;
  mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags: number): void;
  mapDelete(fd: number, key: Uint8Array): boolean;
  mapNextKey(fd: number, key: Uint8Array | null, keySize: number): Buffer | undefined;
  mapLookupBatch(
    fd: number,
    keySize: number,
    valueLength: number,
    capacity: number,
  ): { keys: Buffer; values: Buffer; count: number };
  mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, flags: number): number;
  mapDeleteBatch(fd: number, keys: Uint8Array, count: number): number;
  progTestRun(
    fd: number,
    data: Uint8Array,
    repeat: number,
    ctx: Uint8Array | null,
    dataOutCapacity: number,
  ): NativeTestRunResult;
  tcAttach(
    ifname: string,
    direction: TcDirection,
    progFd: number,
    priority: number,
    handle: number,
    replace: boolean,
  ): { priority: number; handle: number; progId: number };
  tcDetach(ifname: string, direction: TcDirection, priority: number, handle: number): void;
  tcQuery(ifname: string, direction: TcDirection, priority: number, handle: number): number | undefined;
  possibleCpus(): number;
  ktimeNs(): bigint;
  interfaceIndex(ifname: string): number;
  netnsCookie(): bigint;
  cgroupLinkCreate(progFd: number, cgroupDir: string, attachType: number): number;
  linkUpdate(linkFd: number, progFd: number): void;
  linkInfo(fd: number): { id: number; progId: number; type: number; attachType: number };
}

/** The shape of the errors the addon throws (see native/common.cc). */
interface NativeError extends Error {
  errno: number;
  op: string;
  log: string;
  code?: string;
}

const ENOENT = 2;
const ENODEV = 19;
const EINVAL = 22;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
/** The kernel-internal ENOTSUPP that BPF map commands return for "no such operation". */
const ENOTSUPP = 524;

const ADDON_PATH = '../build/Release/dnsplane_bpf.node';
let addon: NativeAddon | undefined;

function native(): NativeAddon {
  if (addon === undefined) {
    const require = createRequire(import.meta.url);
    try {
      addon = require(ADDON_PATH) as NativeAddon;
    } catch (cause) {
      throw new NotSupportedError(
        `the libbpf addon is not built (${ADDON_PATH} next to ${dirname(new URL(import.meta.url).pathname)}); ` +
          `run "npm run build:native -w @dnsplane/bpf-parser": ${String(cause)}`,
      );
    }
  }
  return addon;
}

function isNativeError(error: unknown): error is NativeError {
  return error instanceof Error && typeof (error as Partial<NativeError>).errno === 'number';
}

/** Runs one addon call and turns its errors into the project's error classes. */
function kernel<T>(call: (addon: NativeAddon) => T): T {
  const bound = native();
  try {
    return call(bound);
  } catch (error) {
    throw translate(error);
  }
}

function translate(error: unknown): unknown {
  if (!isNativeError(error)) return error;
  if (error.errno === ENOENT || error.errno === ENODEV) {
    return new NotFoundError(error.log ? `${error.message}\n${error.log}` : error.message);
  }
  return new KernelError(error.message, error.log.trimEnd(), error.errno);
}

function errnoOf(error: unknown): number | undefined {
  return error instanceof KernelError ? error.errno : undefined;
}

// ---------------------------------------------------------------------------------------
// Kinds.

/** cgroup attach points dnsplane uses, with their enum bpf_attach_type numbers. */
export const CGROUP_ATTACH_TYPES = {
  inet4Connect: 10, // BPF_CGROUP_INET4_CONNECT
  inet6Connect: 11, // BPF_CGROUP_INET6_CONNECT
} as const;
export type CgroupAttachType = keyof typeof CGROUP_ATTACH_TYPES;

/** Kernel map type numbers (enum bpf_map_type) dnsplane cares about. */
export const MapType = {
  hash: 1,
  array: 2,
  progArray: 3,
  perfEventArray: 4,
  percpuHash: 5,
  percpuArray: 6,
  lruHash: 9,
  lruPercpuHash: 10,
  lpmTrie: 11,
  ringbuf: 27,
} as const;

/** Kernel program type numbers (enum bpf_prog_type) dnsplane cares about. */
export const ProgramType = {
  socketFilter: 1,
  schedCls: 3,
  schedAct: 4,
  xdp: 6,
} as const;

const PER_CPU_MAP_TYPES: ReadonlySet<number> = new Set([
  MapType.percpuHash,
  MapType.percpuArray,
  MapType.lruPercpuHash,
  21, // BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
]);

/** The smallest page size of the kernels dnsplane runs on (a larger page only makes prefault()'s stride denser than it needs). */
const SMALLEST_PAGE = 4096;

export type UpdateFlag = 'any' | 'noexist' | 'exist';
const UPDATE_FLAGS: Readonly<Record<UpdateFlag, number>> = { any: 0, noexist: 1, exist: 2 };

function updateFlags(flag: UpdateFlag | undefined): number {
  const value = UPDATE_FLAGS[flag ?? 'any'];
  if (value === undefined) throw new TypeError(`map update flag must be any, noexist or exist, not ${String(flag)}`);
  return value;
}

/** Number of possible CPUs: the number of slots in a per-CPU map value. */
export function possibleCpus(): number {
  return kernel((a) => a.possibleCpus());
}

/** CLOCK_MONOTONIC in nanoseconds — the clock `bpf_ktime_get_ns()` reads in BPF programs. */
export function ktimeNs(): bigint {
  return kernel((a) => a.ktimeNs());
}

/**
 * The index of a network interface in this process's network namespace (if_nametoindex:
 * unlike /sys/class/net, right also under `nsenter --net`). NotFoundError when absent.
 */
export function interfaceIndex(ifname: string): number {
  if (ifname.length === 0 || ifname.length > 15) {
    throw new RangeError(`interface name "${ifname}" must have 1 to 15 characters`);
  }
  return kernel((a) => a.interfaceIndex(ifname));
}

/**
 * The cookie of this process's network namespace: what bpf_get_netns_cookie() returns for
 * its sockets (SO_NETNS_COOKIE, Linux 5.14).
 */
export function netnsCookie(): bigint {
  return kernel((a) => a.netnsCookie());
}

/** The link pinned at `path`: its id, the id of the program it runs and its attach type; NotFoundError when none. */
export function pinnedLinkInfo(path: string): { readonly id: number; readonly progId: number; readonly attachType: number } {
  return kernel((a) => {
    const fd = a.objGet(path);
    try {
      const info = a.linkInfo(fd);
      return { id: info.id, progId: info.progId, attachType: info.attachType };
    } finally {
      a.closeFd(fd);
    }
  });
}

/** statfs f_type of bpffs (BPF_FS_MAGIC). */
const BPF_FS_MAGIC = 0xcafe4a11;

/**
 * Creates a pin folder (and its parents) in bpffs. NotSupportedError naming the folder when
 * its nearest existing ancestor is not on a bpf filesystem: e.g. under `ip netns exec`, which
 * mounts a fresh sysfs without /sys/fs/bpf (there, Node's recursive mkdir would retry sysfs's
 * ENOENT forever).
 */
export function makePinFolder(dir: string): void {
  let existing = dir;
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  if (existing === dir) return;
  let type: number;
  try {
    type = statfsSync(existing).type;
  } catch {
    type = 0;
  }
  if (type !== BPF_FS_MAGIC) {
    throw new NotSupportedError(`pin folder ${dir}: ${existing} is not on a bpf filesystem (mount one: mount -t bpf bpf ${existing})`);
  }
  mkdirSync(dir, { recursive: true });
}

/** Removes a pin (a file in bpffs). NotFoundError when there is none. */
export function unpin(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no pin at ${path}`);
    const errno = (error as NodeJS.ErrnoException).errno;
    throw new KernelError(`unpin ${path}`, String(error), errno === undefined ? undefined : Math.abs(errno));
  }
}

/** @internal Shared liveness of the fds that belong to one loaded object. */
export class FdOwner {
  closed = false;
  /**
   * `resource` is the native object whose fds these are: holding it here keeps a program or
   * map usable (not garbage-collected with its object) while anyone still references it.
   */
  constructor(
    readonly description: string,
    readonly resource: object,
  ) {}
  check(what: string): void {
    if (this.closed) throw new Error(`${what}: ${this.description} is closed`);
  }
}

// ---------------------------------------------------------------------------------------
// Object spec and loaded object.

export interface MapSpec {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  /** .rodata/.data/.bss and other sections that libbpf turns into maps. */
  readonly internal: boolean;
  /** Where the map is reused from / pinned to on load, if set. */
  readonly pinPath?: string;
}

export interface ProgramSpec {
  readonly name: string;
  readonly section: string;
  readonly type: number;
  /** Loaded (and verified) by `load()`; see BpfObjectSpec.setAutoload. */
  readonly autoload: boolean;
}

export interface OpenOptions {
  /**
   * Folder for the maps the object declares with `__uint(pinning, LIBBPF_PIN_BY_NAME)`:
   * each is reused from, or pinned to, `<pinRoot>/<map name>` on load. Default
   * DEFAULT_PIN_ROOT. `null`: no map is pinned or reused (a private instance, e.g. in tests).
   */
  readonly pinRoot?: string | null;
}

/**
 * A BPF object file opened but not loaded (like cilium/ebpf's CollectionSpec): set globals,
 * choose pins, then `load()`. After load (successful or not) the spec is spent.
 */
export class BpfObjectSpec {
  #handle: NativeObjectHandle | undefined;

  private constructor(
    readonly path: string,
    handle: NativeObjectHandle,
  ) {
    this.#handle = handle;
  }

  /** Opens (parses) an object file: bpf_object__open_file. NotFoundError if absent. */
  static open(path: string, options: OpenOptions = {}): BpfObjectSpec {
    const pinRoot = options.pinRoot === undefined ? DEFAULT_PIN_ROOT : options.pinRoot;
    const handle = kernel((a) => new a.ObjectHandle(path, pinRoot ?? DEFAULT_PIN_ROOT));
    if (pinRoot === null) {
      for (const m of handle.maps()) {
        if (m.pinPath !== undefined) kernel(() => handle.setPinPath(m.name, null));
      }
    }
    return new BpfObjectSpec(path, handle);
  }

  #live(what: string): NativeObjectHandle {
    if (this.#handle === undefined) throw new Error(`${what}: the spec of ${this.path} was already loaded or closed`);
    return this.#handle;
  }

  get maps(): MapSpec[] {
    return this.#live('maps')
      .maps()
      .map((m) => ({
        name: m.name,
        type: m.type,
        keySize: m.keySize,
        valueSize: m.valueSize,
        maxEntries: m.maxEntries,
        flags: m.flags,
        internal: m.internal === true,
        ...(m.pinPath === undefined ? {} : { pinPath: m.pinPath }),
      }));
  }

  get programs(): ProgramSpec[] {
    return this.#live('programs')
      .programs()
      .map((p) => ({ name: p.name, section: p.section, type: p.type, autoload: p.autoload }));
  }

  /**
   * Sets the initial value of a global variable (`const volatile` in .rodata, or .data/.bss),
   * found by name in the object's BTF. `value` must have exactly the variable's size.
   */
  setGlobal(name: string, value: Uint8Array): void {
    const handle = this.#live('setGlobal');
    kernel(() => handle.setGlobal(name, value));
  }

  /**
   * Every (non-internal) map — or only the named ones — is pinned at `<pinDir>/<map name>`,
   * whether the object declares pinning or not: an existing pin there is reused on load
   * (libbpf checks it is compatible), otherwise the new map is pinned there. The folder is
   * created on load.
   */
  reuseMaps(pinDir: string = DEFAULT_PIN_ROOT, options: { maps?: readonly string[] } = {}): void {
    const handle = this.#live('reuseMaps');
    const known = handle.maps();
    const wanted = options.maps ?? known.filter((m) => m.internal !== true).map((m) => m.name);
    for (const name of wanted) {
      if (!known.some((m) => m.name === name)) throw new NotFoundError(`reuseMaps: ${this.path} has no map named ${name}`);
      kernel(() => handle.setPinPath(name, join(pinDir, name)));
    }
  }

  /**
   * Whether `load()` loads the program (default true). A program left out costs no
   * verification and is not in the loaded object (`program(name)` throws NotFoundError);
   * its maps are still created. NotFoundError for an unknown name.
   */
  setAutoload(programName: string, autoload: boolean): void {
    const handle = this.#live('setAutoload');
    kernel(() => handle.setAutoload(programName, autoload));
  }

  /** Loads only the named programs (the others are left out, see setAutoload). */
  loadOnly(programNames: readonly string[]): void {
    const handle = this.#live('loadOnly');
    const known = handle.programs().map((p) => p.name);
    for (const name of programNames) {
      if (!known.includes(name)) throw new NotFoundError(`loadOnly: ${this.path} has no program named ${name}`);
    }
    for (const name of known) kernel(() => handle.setAutoload(name, programNames.includes(name)));
  }

  /** Pins one map at an explicit path (null: not pinned). */
  setMapPinPath(mapName: string, path: string | null): void {
    const handle = this.#live('setMapPinPath');
    kernel(() => handle.setPinPath(mapName, path));
  }

  /** Loads maps and programs into the kernel. KernelError with the verifier log on rejection. */
  load(): BpfObject {
    const handle = this.#live('load');
    this.#handle = undefined;
    try {
      // Folders of the pins to create (bpffs allows mkdir; libbpf does not create them).
      for (const m of handle.maps()) {
        if (m.pinPath !== undefined) makePinFolder(dirname(m.pinPath));
      }
      kernel(() => handle.load());
    } catch (error) {
      handle.close();
      throw error;
    }
    return new BpfObject(this.path, handle);
  }

  /**
   * load() on a libuv worker thread: the kernel's verification (seconds for a large program)
   * runs while the event loop goes on. Same result and errors as load().
   * `nice`: the worker thread's nice value (-20..19) for the load's duration — a load on
   * someone's critical path can take a CPU ahead of the process's other threads. Without
   * CAP_SYS_NICE a lower value is not allowed and the load runs at the thread's own value.
   */
  async loadAsync(options: { readonly nice?: number } = {}): Promise<BpfObject> {
    const handle = this.#live('loadAsync');
    this.#handle = undefined;
    try {
      for (const m of handle.maps()) {
        if (m.pinPath !== undefined) makePinFolder(dirname(m.pinPath));
      }
      await handle.loadAsync(options.nice).catch((error: unknown) => {
        throw translate(error);
      });
    } catch (error) {
      handle.close();
      throw error;
    }
    return new BpfObject(this.path, handle);
  }

  /** Frees the spec without loading it. */
  close(): void {
    this.#handle?.close();
    this.#handle = undefined;
  }
}

/** A loaded object: its programs and maps stay valid until `close()`. */
export class BpfObject {
  readonly #owner: FdOwner;
  readonly #handle: NativeObjectHandle;
  readonly #programs = new Map<string, BpfProgram>();
  /** Programs of the file that were left out of the load (autoload off). */
  readonly #notLoaded = new Set<string>();
  readonly #maps = new Map<string, BpfMap>();

  /** @internal — use BpfObjectSpec.load(). */
  constructor(
    readonly path: string,
    handle: NativeObjectHandle,
  ) {
    this.#handle = handle;
    this.#owner = new FdOwner(`BPF object ${path}`, handle);
    for (const p of handle.programs()) {
      if (p.fd < 0) this.#notLoaded.add(p.name);
      else this.#programs.set(p.name, new BpfProgram(p.fd, p.name, p.type, this.#owner));
    }
    for (const m of handle.maps()) {
      this.#maps.set(m.name, new BpfMap(m, this.#owner));
    }
  }

  program(name: string): BpfProgram {
    this.#owner.check(`program ${name}`);
    const found = this.#programs.get(name);
    if (found === undefined && this.#notLoaded.has(name)) throw new NotFoundError(`program ${name} of ${this.path} was not loaded (autoload off)`);
    if (found === undefined) throw new NotFoundError(`${this.path} has no program named ${name}`);
    return found;
  }

  map(name: string): BpfMap {
    this.#owner.check(`map ${name}`);
    const found = this.#maps.get(name);
    if (found === undefined) throw new NotFoundError(`${this.path} has no map named ${name}`);
    return found;
  }

  programs(): BpfProgram[] {
    this.#owner.check('programs');
    return [...this.#programs.values()];
  }

  maps(): BpfMap[] {
    this.#owner.check('maps');
    return [...this.#maps.values()];
  }

  /** BpfMap.prefault() of every map of the object: right after a load, before packets come. Returns the lookups made. */
  prefaultMaps(): number {
    return this.maps().reduce((lookups, map) => lookups + map.prefault(), 0);
  }

  /** Closes every fd of the object (pins stay in bpffs, attachments stay in the kernel). */
  close(): void {
    if (this.#owner.closed) return;
    this.#owner.closed = true;
    this.#handle.close();
  }
}

// ---------------------------------------------------------------------------------------
// Programs.

export interface TestRunOptions {
  /** Packet data. Socket filters: must start with a 14-byte Ethernet header (the kernel strips it). */
  readonly data: Uint8Array;
  /** Runs the program this many times (≥ 1); `durationNs` is the average per run. */
  readonly repeat?: number;
  /** `struct __sk_buff` (or the program type's context) passed in. */
  readonly ctx?: Uint8Array;
  /** Room for the output packet; default data length + 512. */
  readonly dataOutCapacity?: number;
}

export interface TestRunResult {
  readonly retval: number;
  /** Average nanoseconds per run, as measured by the kernel. */
  readonly durationNs: number;
  /** The packet after the run (for socket filters including the Ethernet header again). */
  readonly data: Buffer;
  readonly ctx?: Buffer;
}

export class BpfProgram {
  /** @internal — obtain programs from BpfObject.program() or BpfProgram.fromPinned(). */
  constructor(
    readonly fd: number,
    readonly name: string,
    /** Kernel program type number (see ProgramType). */
    readonly type: number,
    readonly owner: FdOwner | undefined,
  ) {}

  #closed = false;

  /** True once the program's fd is closed (its own, or its object's). */
  get closed(): boolean {
    return this.#closed || this.owner?.closed === true;
  }

  #check(what: string): number {
    if (this.#closed) throw new Error(`${what}: program ${this.name} is closed`);
    this.owner?.check(`${what} of program ${this.name}`);
    return this.fd;
  }

  /** Opens a pinned program; the returned program owns its fd (close it). */
  static fromPinned(path: string): BpfProgram {
    return kernel((a) => {
      const fd = a.objGet(path);
      try {
        const info = a.progInfo(fd);
        return new BpfProgram(fd, info.name, info.type, undefined);
      } catch (error) {
        a.closeFd(fd);
        throw error;
      }
    });
  }

  /**
   * Instructions the verifier processed to accept the program (`verified_insns`): its work,
   * which is the load time, not the program's size.
   */
  get verifiedInstructions(): number {
    const fd = this.#check('verifiedInstructions');
    return kernel((a) => a.progInfo(fd)).verifiedInstructions;
  }

  /** The kernel's id of the program. */
  get id(): number {
    const fd = this.#check('id');
    return kernel((a) => a.progInfo(fd)).id;
  }

  /** The maps the loaded program uses (kernel ids and names), e.g. to check a pinned program still uses the pinned maps. */
  usedMaps(): Array<{ readonly id: number; readonly name: string }> {
    const fd = this.#check('usedMaps');
    return kernel((a) => a.progMaps(fd));
  }

  /** Pins the program at `path` in bpffs (the folder must exist). */
  pin(path: string): void {
    const fd = this.#check('pin');
    kernel((a) => a.objPin(fd, path));
  }

  /**
   * Attaches the program to a cgroup (v2 directory `cgroupDir`) by a link pinned at `pinPath`,
   * which keeps it attached after this process exits; a link already pinned there is switched to
   * this program in place (no moment without one). Unpinning the link detaches it.
   */
  attachCgroupLink(cgroupDir: string, attachType: CgroupAttachType, pinPath: string): void {
    const fd = this.#check('attachCgroupLink');
    kernel((a) => {
      let link: number;
      try {
        link = a.objGet(pinPath);
      } catch (error) {
        if (!isNativeError(error) || error.errno !== ENOENT) throw error;
        link = a.cgroupLinkCreate(fd, cgroupDir, CGROUP_ATTACH_TYPES[attachType]);
        try {
          a.objPin(link, pinPath);
        } finally {
          a.closeFd(link);
        }
        return;
      }
      try {
        a.linkUpdate(link, fd);
      } finally {
        a.closeFd(link);
      }
    });
  }

  /** BPF_PROG_TEST_RUN. */
  testRun(options: TestRunOptions): TestRunResult {
    const fd = this.#check('testRun');
    const repeat = options.repeat ?? 1;
    if (!Number.isInteger(repeat) || repeat < 1) throw new RangeError(`testRun: repeat must be an integer ≥ 1, not ${repeat}`);
    const capacity = options.dataOutCapacity ?? options.data.length + 512;
    const result = kernel((a) => a.progTestRun(fd, options.data, repeat, options.ctx ?? null, capacity));
    return {
      retval: result.retval,
      durationNs: result.durationNs,
      data: result.data,
      ...(result.ctx === undefined ? {} : { ctx: result.ctx }),
    };
  }

  /** Closes the fd of a program opened from a pin; a no-op for programs of a BpfObject. */
  close(): void {
    if (this.owner !== undefined || this.#closed) return;
    this.#closed = true;
    native().closeFd(this.fd);
  }
}

// ---------------------------------------------------------------------------------------
// Maps.

export class BpfMap {
  readonly fd: number;
  readonly name: string;
  /** Kernel map type number (see MapType). */
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  /** Per-CPU maps: lookups return one 8-byte-aligned slot of `valueSize` bytes per possible CPU. */
  readonly perCpu: boolean;
  /** Bytes of a lookup result / an update value: valueSize, or per CPU round8(valueSize) × possibleCpus(). */
  readonly valueLength: number;
  readonly #owner: FdOwner | undefined;
  #closed = false;

  /** @internal — obtain maps from BpfObject.map() or BpfMap.fromPinned(). */
  constructor(info: NativeMapInfo, owner: FdOwner | undefined) {
    this.fd = info.fd;
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.perCpu = PER_CPU_MAP_TYPES.has(info.type);
    this.valueLength = this.perCpu ? perCpuSlotSize(info.valueSize) * possibleCpus() : info.valueSize;
    this.#owner = owner;
  }

  /** Opens a pinned map; the returned map owns its fd (close it). NotFoundError if no pin. */
  static fromPinned(path: string): BpfMap {
    return kernel((a) => {
      const fd = a.objGet(path);
      try {
        const info = a.mapInfo(fd);
        return new BpfMap({ ...info, fd }, undefined);
      } catch (error) {
        a.closeFd(fd);
        throw error;
      }
    });
  }

  /** True once the map's fd is closed (its own, or its object's). */
  get closed(): boolean {
    return this.#closed || this.#owner?.closed === true;
  }

  /** The kernel's id of the map (two fds of one map have the same id). */
  get id(): number {
    const fd = this.#check('id');
    return kernel((a) => a.mapInfo(fd)).id;
  }

  #check(what: string): number {
    if (this.#closed) throw new Error(`${what}: map ${this.name} is closed`);
    this.#owner?.check(`${what} on map ${this.name}`);
    return this.fd;
  }

  #checkKey(key: Uint8Array, what: string): void {
    if (key.length !== this.keySize) {
      throw new RangeError(`${what} on map ${this.name}: key has ${key.length} bytes, the map's keys have ${this.keySize}`);
    }
  }

  #checkValue(value: Uint8Array, what: string): void {
    if (value.length !== this.valueLength) {
      throw new RangeError(
        `${what} on map ${this.name}: value has ${value.length} bytes, expected ${this.valueLength}` +
          (this.perCpu ? ` (${possibleCpus()} CPUs × ${perCpuSlotSize(this.valueSize)})` : ''),
      );
    }
  }

  lookup(key: Uint8Array): Buffer | undefined {
    const fd = this.#check('lookup');
    this.#checkKey(key, 'lookup');
    return kernel((a) => a.mapLookup(fd, key, this.valueLength));
  }

  /** Per-CPU maps: the value of each possible CPU, each `valueSize` bytes. */
  lookupPerCpu(key: Uint8Array): Buffer[] | undefined {
    if (!this.perCpu) throw new TypeError(`lookupPerCpu: map ${this.name} is not a per-CPU map`);
    const value = this.lookup(key);
    return value === undefined ? undefined : splitPerCpu(value, this.valueSize);
  }

  update(key: Uint8Array, value: Uint8Array, flags: UpdateFlag = 'any'): void {
    const fd = this.#check('update');
    this.#checkKey(key, 'update');
    this.#checkValue(value, 'update');
    const f = updateFlags(flags);
    kernel((a) => a.mapUpdate(fd, key, value, f));
  }

  /** True when the key was there. */
  delete(key: Uint8Array): boolean {
    const fd = this.#check('delete');
    this.#checkKey(key, 'delete');
    return kernel((a) => a.mapDelete(fd, key));
  }

  /** All keys, by bpf_map_get_next_key (a key deleted meanwhile may restart a hash walk; duplicates are dropped). */
  keys(): Buffer[] {
    const fd = this.#check('keys');
    const seen = new Set<string>();
    const out: Buffer[] = [];
    kernel((a) => {
      let key: Buffer | undefined = a.mapNextKey(fd, null, this.keySize);
      // A hash walk restarts when its cursor was deleted; bound the walk by a generous budget.
      let budget = Math.max(this.maxEntries, 1) * 4;
      while (key !== undefined && budget-- > 0) {
        const hex = key.toString('hex');
        if (!seen.has(hex)) {
          seen.add(hex);
          out.push(key);
        }
        key = a.mapNextKey(fd, key, this.keySize);
      }
    });
    return out;
  }

  /** True when the map holds no entry (one bpf_map_get_next_key call; an array map is never empty). */
  isEmpty(): boolean {
    const fd = this.#check('isEmpty');
    return kernel((a) => a.mapNextKey(fd, null, this.keySize)) === undefined;
  }

  /**
   * Every entry in a few BPF_MAP_LOOKUP_BATCH calls: the keys, then the values, back to back;
   * undefined where the kernel has no batch op for the map (or a hash bucket outgrows a batch
   * chunk: ENOSPC), and the callers iterate keys instead.
   */
  #lookupBatch(op: string): { count: number; keys: Buffer; values: Buffer } | undefined {
    const fd = this.#check(op);
    try {
      return kernel((a) => a.mapLookupBatch(fd, this.keySize, this.valueLength, Math.max(this.maxEntries, 1)));
    } catch (error) {
      const errno = errnoOf(error);
      if (errno !== ENOTSUPP && errno !== EOPNOTSUPP && errno !== EINVAL && errno !== ENOSPC) throw error;
      return undefined;
    }
  }

  /**
   * All keys, read like entries() (BPF_MAP_LOOKUP_BATCH, a handful of syscalls) where keys()
   * makes one syscall per key; the values the batch call returns are dropped unread (at
   * 20,000 entries, copying them out cost more than the read itself).
   */
  batchKeys(): Buffer[] {
    const batch = this.#lookupBatch('batchKeys');
    if (batch === undefined) return this.keys();
    const out: Buffer[] = [];
    for (let i = 0; i < batch.count; i++) out.push(batch.keys.subarray(i * this.keySize, (i + 1) * this.keySize));
    return out;
  }

  /** All entries, each key and value a Buffer of its own (forEachEntry, copied). */
  entries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    this.forEachEntry((keys, keyAt, values, valueAt) =>
      out.push([Buffer.from(keys.subarray(keyAt, keyAt + this.keySize)), Buffer.from(values.subarray(valueAt, valueAt + this.valueLength))]),
    );
    return out;
  }

  /**
   * Visits every entry without a Buffer pair per entry: `keys` and `values` hold many entries,
   * this one at `keyAt` and `valueAt` (valid during the call only). BPF_MAP_LOOKUP_BATCH, or key
   * iteration + lookup where the kernel has no batch op for the map. For reading 100,000 entries
   * into other objects (a state export).
   */
  forEachEntry(visit: (keys: Buffer, keyAt: number, values: Buffer, valueAt: number) => void): void {
    const batch = this.#lookupBatch('forEachEntry');
    if (batch !== undefined) {
      for (let i = 0; i < batch.count; i++) visit(batch.keys, i * this.keySize, batch.values, i * this.valueLength);
      return;
    }
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value !== undefined) visit(key, 0, value, 0);
    }
  }

  /**
   * BPF_MAP_UPDATE_BATCH (one syscall), or one update per key where the kernel has no batch
   * op for the map — and for 'noexist'/'exist', which the kernel's batch call does not take.
   * Not atomic: on failure, the entries before the failing one are written.
   */
  updateBatch(keys: readonly Uint8Array[], values: readonly Uint8Array[], flags: UpdateFlag = 'any'): void {
    const fd = this.#check('updateBatch');
    if (keys.length !== values.length) {
      throw new RangeError(`updateBatch on map ${this.name}: ${keys.length} keys but ${values.length} values`);
    }
    if (keys.length === 0) return;
    keys.forEach((k) => this.#checkKey(k, 'updateBatch'));
    values.forEach((v) => this.#checkValue(v, 'updateBatch'));
    const f = updateFlags(flags);
    if (flags === 'any') {
      try {
        kernel((a) => a.mapUpdateBatch(fd, Buffer.concat(keys), Buffer.concat(values), keys.length, f));
        return;
      } catch (error) {
        const errno = errnoOf(error);
        if (errno !== ENOTSUPP && errno !== EOPNOTSUPP) throw error;
      }
    }
    keys.forEach((key, i) => this.update(key, values[i] as Uint8Array, flags));
  }

  /**
   * BPF_MAP_DELETE_BATCH, or one delete per key where the kernel has no batch op for the map.
   * A missing key is a NotFoundError (the keys before it are deleted).
   */
  deleteBatch(keys: readonly Uint8Array[]): void {
    const fd = this.#check('deleteBatch');
    if (keys.length === 0) return;
    keys.forEach((k) => this.#checkKey(k, 'deleteBatch'));
    try {
      kernel((a) => a.mapDeleteBatch(fd, Buffer.concat(keys), keys.length));
      return;
    } catch (error) {
      const errno = errnoOf(error);
      if (errno !== ENOTSUPP && errno !== EOPNOTSUPP) throw error;
    }
    for (const key of keys) this.delete(key);
  }

  /**
   * Reads an array map's memory once, through the kernel's own mapping of it, so the first
   * packets after a load do not pay for the first touch of each page. On a virtual machine
   * with shadow page tables that first touch costs a fault into the hypervisor: measured on
   * these machines, a cold query whose record went into a fresh page of dnsp_queries took
   * ~20 µs instead of ~7 (bench/README.md, "First touches"). The kernel zeroes a new array
   * through another mapping, so the map's own pages stay untouched until a program writes them.
   * Plain arrays: one lookup per page-sized stride of elements (an element takes valueSize
   * rounded up to 8 bytes, as a per-CPU slot does; reads at most a page apart leave no page
   * out); per-CPU arrays: every element (each is its own per-CPU block).
   * Other types are left as they are: a preallocated hash map's elements are written when
   * the kernel creates it, and nothing outside the kernel writes a ring buffer's pages.
   * Returns the lookups made.
   */
  prefault(): number {
    if (this.type !== MapType.array && this.type !== MapType.percpuArray) return 0;
    const fd = this.#check('prefault');
    const stride = this.perCpu ? 1 : Math.max(1, Math.floor(SMALLEST_PAGE / perCpuSlotSize(this.valueSize)));
    const key = Buffer.alloc(4);
    let lookups = 0;
    kernel((a) => {
      for (let index = 0; index < this.maxEntries; index += stride) {
        key.writeUInt32LE(index);
        a.mapLookup(fd, key, this.valueLength);
        lookups += 1;
      }
    });
    return lookups;
  }

  /** Pins the map at `path` in bpffs (the folder must exist). */
  pin(path: string): void {
    const fd = this.#check('pin');
    kernel((a) => a.objPin(fd, path));
  }

  /** Closes the fd of a map opened from a pin; a no-op for maps of a BpfObject. */
  close(): void {
    if (this.#owner !== undefined || this.#closed) return;
    this.#closed = true;
    native().closeFd(this.fd);
  }
}

/** Size of one CPU's slot in a per-CPU map value: valueSize rounded up to 8 bytes. */
export function perCpuSlotSize(valueSize: number): number {
  return Math.ceil(valueSize / 8) * 8;
}

/** Splits a per-CPU value into one `valueSize`-byte Buffer per CPU. */
export function splitPerCpu(value: Buffer, valueSize: number): Buffer[] {
  const slot = perCpuSlotSize(valueSize);
  const out: Buffer[] = [];
  for (let offset = 0; offset + slot <= value.length; offset += slot) {
    out.push(Buffer.from(value.subarray(offset, offset + valueSize)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Ring buffer.

export interface RingBufferConsumerOptions {
  /** Called when `onRecord` throws; default: the error becomes an uncaught exception. */
  readonly onError?: (error: unknown) => void;
}

/**
 * Delivers the records of a BPF ring buffer map to `onRecord`, driven by the Node event
 * loop (libuv polls the ring buffer's epoll fd): no timers, no threads. Each record is a
 * copy. Keeps the process alive until `close()` (or `unref()`).
 */
export class RingBufferConsumer {
  #handle: NativeRingBuffer | undefined;
  /** The ring buffer's map (and with it its object) stays referenced while consuming. */
  readonly map: BpfMap;

  constructor(map: BpfMap, onRecord: (record: Buffer) => void, options: RingBufferConsumerOptions = {}) {
    if (map.type !== MapType.ringbuf) throw new TypeError(`RingBufferConsumer: map ${map.name} is not a ring buffer`);
    if (map.closed) throw new Error(`RingBufferConsumer: map ${map.name} is closed`);
    this.map = map;
    const onError =
      options.onError ??
      ((error: unknown) => {
        process.nextTick(() => {
          throw error;
        });
      });
    const deliver = (record: Buffer): void => {
      try {
        onRecord(record);
      } catch (error) {
        onError(error);
      }
    };
    this.#handle = kernel((a) => new a.RingBufferHandle(map.fd, deliver));
  }

  /** Delivers the records available now, synchronously; returns how many. */
  consume(): number {
    const handle = this.#handle;
    if (handle === undefined) return 0;
    return kernel(() => handle.consume());
  }

  /** Lets the process exit while the consumer is open. */
  unref(): this {
    this.#handle?.unref();
    return this;
  }

  ref(): this {
    this.#handle?.ref();
    return this;
  }

  close(): void {
    this.#handle?.close();
    this.#handle = undefined;
  }
}

// ---------------------------------------------------------------------------------------
// tc (clsact) attachment.

export type TcDirection = 'ingress' | 'egress';

export interface TcFilterRef {
  /** Interface name, resolved in the network namespace of this process. */
  readonly ifname: string;
  readonly direction: TcDirection;
  /** tc filter priority; default 1. */
  readonly priority?: number;
  /** tc filter handle; default 1. */
  readonly handle?: number;
}

export interface TcAttachOptions extends TcFilterRef {
  readonly program: BpfProgram;
  /** Replace a filter already at (priority, handle) instead of failing with EEXIST. */
  readonly replace?: boolean;
}

export interface TcAttachment {
  readonly ifname: string;
  readonly direction: TcDirection;
  readonly priority: number;
  readonly handle: number;
  /** Kernel id of the attached program. */
  readonly progId: number;
}

function tcRef(ref: TcFilterRef): { priority: number; handle: number } {
  if (ref.direction !== 'ingress' && ref.direction !== 'egress') {
    throw new TypeError(`tc: direction must be ingress or egress, not ${String(ref.direction)}`);
  }
  if (ref.ifname.length === 0 || ref.ifname.length > 15) {
    throw new RangeError(`tc: interface name "${ref.ifname}" must have 1 to 15 characters`);
  }
  const priority = ref.priority ?? 1;
  const handle = ref.handle ?? 1;
  if (!Number.isInteger(priority) || priority < 1 || priority > 0xffff) {
    throw new RangeError(`tc: priority must be an integer 1..65535, not ${priority}`);
  }
  if (!Number.isInteger(handle) || handle < 1 || handle > 0xffffffff) {
    throw new RangeError(`tc: handle must be a positive 32-bit integer, not ${handle}`);
  }
  return { priority, handle };
}

/**
 * Attaches a tc classifier (direct-action) on the interface's clsact hook, creating the
 * clsact qdisc if missing. The interface is looked up in this process's network namespace.
 */
export function attachTc(options: TcAttachOptions): TcAttachment {
  const { priority, handle } = tcRef(options);
  const fd = options.program.fd;
  if (options.program.closed) throw new Error(`attachTc: program ${options.program.name} is closed`);
  const result = kernel((a) =>
    a.tcAttach(options.ifname, options.direction, fd, priority, handle, options.replace === true),
  );
  return { ifname: options.ifname, direction: options.direction, ...result };
}

/** Detaches the filter at (priority, handle); NotFoundError when it is not there. The clsact qdisc stays. */
export function detachTc(options: TcFilterRef): void {
  const { priority, handle } = tcRef(options);
  kernel((a) => a.tcDetach(options.ifname, options.direction, priority, handle));
}

/** The kernel id of the program attached at (priority, handle), or undefined. */
export function queryTc(options: TcFilterRef): number | undefined {
  const { priority, handle } = tcRef(options);
  return kernel((a) => a.tcQuery(options.ifname, options.direction, priority, handle));
}

/**
 * Unpins the map pinned at `path` when it is not of the `expected` type, value size and flags
 * (each when given) — a pin of an older layout, which libbpf would refuse to reuse, failing the
 * load. True when it was removed; false when it matches or nothing is pinned there.
 */
export function unpinIncompatibleMap(path: string, expected: { readonly type?: number; readonly valueSize: number; readonly flags?: number }): boolean {
  let map: BpfMap;
  try {
    map = BpfMap.fromPinned(path);
  } catch (error) {
    if (error instanceof NotFoundError) return false;
    throw error;
  }
  const compatible =
    map.valueSize === expected.valueSize &&
    (expected.type === undefined || map.type === expected.type) &&
    (expected.flags === undefined || map.flags === expected.flags);
  map.close();
  if (compatible) return false;
  unpin(path);
  return true;
}
