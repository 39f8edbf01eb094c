// Per-domain-set xt_bpf matches (bpf/xt_member.bpf.o): one tiny socket filter per set, its set
// id a constant in .rodata, pinned at <pinRoot>/xt_member_<8 hex digits of the id> for
// `iptables -m bpf --object-pinned <path>`. Each reads the membership maps the parser writes
// (pinned by name under the same pin root) and matches when the packet's destination is a
// live member of its set.
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isKernelError } from '@dnsplane/core';
import { BpfObjectSpec, BpfProgram, DEFAULT_PIN_ROOT, ProgramType, makePinFolder } from './libbpf.js';
import { MAP_NAMES } from './maps.js';

/** The compiled xt_bpf membership match (built by `make -C bpf`). */
export const XT_MEMBER_OBJECT_PATH = fileURLToPath(new URL('../bpf/xt_member.bpf.o', import.meta.url));
/** The program inside it, and its .rodata constant. */
export const XT_MEMBER_PROGRAM = 'dnsplane_xt_member';
export const XT_MEMBER_SET_ID_GLOBAL = 'set_id';

const PIN_PATTERN = /^xt_member_([0-9a-f]{8})$/;
const EEXIST = 17;

function checkSetId(setId: number): number {
  if (!Number.isInteger(setId) || setId < 0 || setId > 0xffffffff) {
    throw new RangeError(`domain-set id must be a 32-bit unsigned integer, not ${String(setId)}`);
  }
  return setId;
}

/** File name of a set's match under the pin root: `xt_member_` + 8 lower-case hex digits. */
export function xtMemberPinName(setId: number): string {
  return `xt_member_${checkSetId(setId).toString(16).padStart(8, '0')}`;
}

/** Full pin path of a set's match. */
export function xtMemberPinPath(pinRoot: string, setId: number): string {
  return join(pinRoot, xtMemberPinName(setId));
}

export interface MembershipMatchOptions {
  /** The parser's pin root (membership maps are shared through it); default /sys/fs/bpf/dnsplane. */
  readonly pinRoot?: string;
  /** Default: XT_MEMBER_OBJECT_PATH. */
  readonly objectPath?: string;
}

export class MembershipMatchPrograms {
  readonly pinRoot: string;
  readonly #objectPath: string;
  #closed = false;

  constructor(options: MembershipMatchOptions = {}) {
    this.pinRoot = options.pinRoot ?? DEFAULT_PIN_ROOT;
    this.#objectPath = options.objectPath ?? XT_MEMBER_OBJECT_PATH;
  }

  #check(what: string): void {
    if (this.#closed) throw new Error(`MembershipMatchPrograms.${what}: closed`);
  }

  /**
   * Makes sure a match is pinned for every set id: existing pins (socket filters) are
   * reused, missing ones loaded and pinned. Returns set id → pin path. Loads nothing when
   * an id is invalid (RangeError); a failed load leaves the pins made before it (each is
   * complete and usable on its own).
   */
  ensure(setIds: readonly number[]): Map<number, string> {
    this.#check('ensure');
    const ids = [...new Set(setIds.map(checkSetId))];
    const out = new Map<number, string>();
    for (const id of ids) {
      const path = xtMemberPinPath(this.pinRoot, id);
      if (!this.#pinnedMatch(path)) this.#loadAndPin(id, path);
      out.set(id, path);
    }
    return out;
  }

  /** Set ids whose match is pinned now. */
  pinned(): number[] {
    this.#check('pinned');
    if (!existsSync(this.pinRoot)) return [];
    const ids: number[] = [];
    for (const name of readdirSync(this.pinRoot)) {
      const m = PIN_PATTERN.exec(name);
      if (m?.[1] !== undefined) ids.push(Number.parseInt(m[1], 16));
    }
    return ids.sort((a, b) => a - b);
  }

  /**
   * Unpins the matches of every set not in `keep`; returns the ids removed. iptables rules
   * that use a removed match keep their own reference to it until they are deleted.
   */
  prune(keep: readonly number[]): number[] {
    this.#check('prune');
    const wanted = new Set(keep.map(checkSetId));
    const removed: number[] = [];
    for (const id of this.pinned()) {
      if (wanted.has(id)) continue;
      try {
        unlinkSync(xtMemberPinPath(this.pinRoot, id));
        removed.push(id);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    return removed;
  }

  /** Nothing stays open between calls; after close() the instance refuses work. Pins stay. */
  close(): void {
    this.#closed = true;
  }

  /** Is there a socket filter pinned at `path`? Anything else pinned there is replaced. */
  #pinnedMatch(path: string): boolean {
    if (!existsSync(path)) return false;
    let program: BpfProgram | undefined;
    try {
      program = BpfProgram.fromPinned(path);
      if (program.type === ProgramType.socketFilter && program.name === XT_MEMBER_PROGRAM.slice(0, 15)) return true;
    } catch {
      // not a program (a map or a stale file): replaced below
    } finally {
      program?.close();
    }
    unlinkSync(path);
    return false;
  }

  #loadAndPin(setId: number, path: string): void {
    const spec = BpfObjectSpec.open(this.#objectPath);
    try {
      const value = Buffer.alloc(4);
      value.writeUInt32LE(setId);
      spec.setGlobal(XT_MEMBER_SET_ID_GLOBAL, value);
      spec.reuseMaps(this.pinRoot, { maps: [MAP_NAMES.members4, MAP_NAMES.members6] });
    } catch (error) {
      spec.close();
      throw error;
    }
    makePinFolder(this.pinRoot);
    const object = spec.load();
    try {
      object.program(XT_MEMBER_PROGRAM).pin(path);
    } catch (error) {
      // another process pinned the same set meanwhile: theirs is as good as ours
      if (!(isKernelError(error) && error.errno === EEXIST && existsSync(path))) throw error;
    } finally {
      object.close();
    }
  }
}
