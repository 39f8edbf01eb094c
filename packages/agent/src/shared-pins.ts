// Make before break across dataplanes that share one bpffs pin folder.
//
// Every BPF-based driver pins under `bpf.pinRoot`, and they share the parser's maps (membership,
// queries, domain table, config, counters, events: bpf-parser's MAP_NAMES) — the kernel's
// learned state. Each driver's remove() deletes the whole pin folder, so removing the OLD
// dataplane after the new one is in force would unpin what the new one uses: its programs keep
// working (they hold their maps), but the next load (a restart, a re-install) would find no pins
// and start from empty maps, and exportLearned would see nothing.
//
// So the agent, around the old dataplane's remove():
//   1. before the new dataplane is installed, lists the pins (`before`);
//   2. just before the old one's remove(), opens (holds an fd on) every shared parser map and
//      every pin that appeared during the new install;
//   3. after remove(), pins again at its old path each object whose pin is gone, then closes
//      the fds.
// The old dataplane's own objects (pins that existed before the new install and are not
// shared) stay removed.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { BpfMap, BpfProgram, MAP_NAMES, makePinFolder } from '@dnsplane/bpf-parser';

export interface PinSnapshot {
  readonly paths: ReadonlySet<string>;
}

export interface HeldPins {
  /** Re-pins what remove() unpinned; returns the paths re-pinned. Closes every held fd. */
  restore(): string[];
}

export interface SharedPins {
  snapshot(pinRoot: string): PinSnapshot;
  hold(pinRoot: string, before: PinSnapshot): HeldPins;
}

function listPins(root: string): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push(path);
    }
  };
  walk(root);
  return out;
}

type Held = { readonly path: string; readonly object: BpfMap | BpfProgram };

function open(path: string): BpfMap | BpfProgram | undefined {
  try {
    return BpfMap.fromPinned(path);
  } catch {
    try {
      return BpfProgram.fromPinned(path);
    } catch {
      return undefined;
    }
  }
}

/** The real thing (bpffs + libbpf). */
export const bpffsSharedPins: SharedPins = {
  snapshot(pinRoot) {
    return { paths: new Set(listPins(pinRoot)) };
  },
  hold(pinRoot, before) {
    const shared = new Set(Object.values(MAP_NAMES).map((name) => join(pinRoot, name)));
    const wanted = listPins(pinRoot).filter((path) => shared.has(path) || !before.paths.has(path));
    const held: Held[] = [];
    for (const path of wanted) {
      const object = open(path);
      if (object !== undefined) held.push({ path, object });
    }
    return {
      restore() {
        const repinned: string[] = [];
        for (const { path, object } of held) {
          try {
            if (!existsSync(path)) {
              makePinFolder(dirname(path));
              object.pin(path);
              repinned.push(relative(pinRoot, path));
            }
          } finally {
            object.close();
          }
        }
        return repinned;
      },
    };
  },
};

/** For tests and builds without BPF: keeps nothing. */
export const noSharedPins: SharedPins = {
  snapshot: () => ({ paths: new Set() }),
  hold: () => ({ restore: () => [] }),
};
