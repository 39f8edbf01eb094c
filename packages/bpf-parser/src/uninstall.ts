// Removing everything dnsplane put into the kernel through BPF: its tc filters on the given
// interfaces (both directions, at dnsplane's fixed slots, plus any extra slots another
// package uses) and the whole pin root (maps, pinned programs). Programs and maps still
// referenced elsewhere (an iptables rule using a pinned match) live until that goes.
import { rmSync } from 'node:fs';
import { isNotFound } from '@dnsplane/core';
import { DEFAULT_PIN_ROOT, type TcDirection } from './libbpf.js';
import { DNSPLANE_TC_FILTERS, detachDnsplaneTc, type TcSlot } from './tc-attachment.js';

export interface UninstallBpfOptions {
  /** Default /sys/fs/bpf/dnsplane. */
  readonly pinRoot?: string;
  /** Interfaces (in this process's network namespace) to remove dnsplane's tc filters from. */
  readonly interfaces: readonly string[];
  /** More tc slots to clear on the same interfaces (e.g. the ebpf dataplane's own programs). */
  readonly extraSlots?: readonly TcSlot[];
}

export interface UninstallBpfReport {
  /** Filters that were attached and are now removed. */
  readonly detached: ReadonlyArray<{ ifname: string; direction: TcDirection; priority: number; handle: number }>;
  /** Interfaces that do not exist (nothing to remove there). */
  readonly missingInterfaces: readonly string[];
  readonly pinRoot: string;
}

/** Detaches every dnsplane tc filter on `interfaces`, then removes the pin root. Idempotent. */
export function uninstallBpf(options: UninstallBpfOptions): UninstallBpfReport {
  const pinRoot = options.pinRoot ?? DEFAULT_PIN_ROOT;
  const slots: TcSlot[] = [...Object.values(DNSPLANE_TC_FILTERS), ...(options.extraSlots ?? [])];
  const detached: Array<{ ifname: string; direction: TcDirection; priority: number; handle: number }> = [];
  const missingInterfaces: string[] = [];
  for (const ifname of new Set(options.interfaces)) {
    try {
      for (const direction of ['ingress', 'egress'] as const) {
        for (const slot of slots) {
          if (detachDnsplaneTc(slot, ifname, direction)) detached.push({ ifname, direction, ...slot });
        }
      }
    } catch (error) {
      if (!isNotFound(error)) throw error;
      missingInterfaces.push(ifname);
    }
  }
  rmSync(pinRoot, { recursive: true, force: true });
  return { detached, missingInterfaces, pinRoot };
}
