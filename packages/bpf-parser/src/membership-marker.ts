// The tc membership mark (bpf/membership_mark.bpf.o): loaded with the membership maps and
// dnsp_endpoint_sets pinned by name under the pin root, programmed per interface (ifindex →
// the domain sets and mark bits), attached on tc ingress of workload interfaces. The same
// object's connect marker (cgroup/connect4 and connect6) marks the node's own TCP connects
// from the HOST_ENDPOINT_KEY entry, attached by links pinned under the pin root.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BpfObjectSpec,
  DEFAULT_PIN_ROOT,
  interfaceIndex,
  netnsCookie,
  pinnedLinkInfo,
  unpin,
  unpinIncompatibleMap,
  type BpfMap,
  type BpfObject,
  type BpfProgram,
  type CgroupAttachType,
  type TcAttachment,
} from './libbpf.js';
import { withCgroup2Root } from './cgroup2.js';
import {
  ENDPOINT_SETS_LAYOUTS,
  ENDPOINT_SETS_MAP,
  decodeEndpointKey,
  decodeEndpointSets,
  encodeEndpointKey,
  encodeEndpointSets,
  type EndpointSetEntry,
  type EndpointSets,
} from './endpoint-sets.js';
import { MAP_NAMES } from './maps.js';
import { attachDnsplaneTc, detachDnsplaneTc, queryDnsplaneTc } from './tc-attachment.js';

/** The compiled tc membership mark (built by `make -C bpf`). */
export const MEMBERSHIP_MARK_OBJECT_PATH = fileURLToPath(new URL('../bpf/membership_mark.bpf.o', import.meta.url));
export const MEMBERSHIP_MARK_PROGRAM = 'dnsplane_membership_mark';
/** The connect marker's programs and the pins of their cgroup links (<pinRoot>/<pin>). */
export const HOST_CONNECT_PROGRAMS: ReadonlyArray<{
  readonly hook: 'connect4' | 'connect6';
  readonly program: string;
  readonly attachType: CgroupAttachType;
  readonly pin: string;
}> = [
  { hook: 'connect4', program: 'dnsplane_host_connect4', attachType: 'inet4Connect', pin: 'dnsp_host_connect4' },
  { hook: 'connect6', program: 'dnsplane_host_connect6', attachType: 'inet6Connect', pin: 'dnsp_host_connect6' },
];
/** The object's global holding the node's network namespace cookie (set at load). */
const HOST_NETNS_COOKIE_GLOBAL = 'host_netns_cookie';

export interface MembershipMarkerOptions {
  /** The parser's pin root; default /sys/fs/bpf/dnsplane. */
  readonly pinRoot?: string;
  /** Default: MEMBERSHIP_MARK_OBJECT_PATH. */
  readonly objectPath?: string;
  /**
   * Load (verify) the connect marker's programs too (default true). Without a host endpoint
   * they are not needed, and leaving them out keeps their verification off the agent's start.
   */
  readonly connectMarker?: boolean;
}

export class MembershipMarker {
  readonly #object: BpfObject;

  private constructor(
    object: BpfObject,
    readonly pinRoot: string,
    /** The connect marker's programs were loaded (MembershipMarkerOptions.connectMarker). */
    readonly hasConnectMarker: boolean,
  ) {
    this.#object = object;
  }

  /**
   * Loads the program; dnsp_members4/6, dnsp_endpoint_sets and dnsp_config (the parser's
   * trusted servers, whose DNS is not looked up) are reused from (or pinned at)
   * <pinRoot>/<name>, so interface programming survives restarts and is shared. The connect
   * marker is bound to this process's network namespace: the node is where the agent runs.
   */
  static load(options: MembershipMarkerOptions = {}): MembershipMarker {
    const pinRoot = options.pinRoot ?? DEFAULT_PIN_ROOT;
    const existed = existsSync(pinRoot);
    dropIncompatibleEndpointSetsPin(pinRoot);
    const spec = BpfObjectSpec.open(options.objectPath ?? MEMBERSHIP_MARK_OBJECT_PATH);
    try {
      const cookie = Buffer.alloc(8);
      cookie.writeBigUInt64LE(netnsCookie());
      spec.setGlobal(HOST_NETNS_COOKIE_GLOBAL, cookie);
      if (options.connectMarker === false) for (const { program } of HOST_CONNECT_PROGRAMS) spec.setAutoload(program, false);
      spec.reuseMaps(pinRoot, { maps: [MAP_NAMES.members4, MAP_NAMES.members6, ENDPOINT_SETS_MAP, MAP_NAMES.config] });
    } catch (error) {
      spec.close();
      throw error;
    }
    try {
      return new MembershipMarker(spec.load(), pinRoot, options.connectMarker !== false);
    } catch (error) {
      if (!existed) rmSync(pinRoot, { recursive: true, force: true });
      throw error;
    }
  }

  /** The tc classifier (data starts at the Ethernet header; returns TC_ACT_UNSPEC). */
  get program(): BpfProgram {
    return this.#object.program(MEMBERSHIP_MARK_PROGRAM);
  }

  /** dnsp_endpoint_sets. */
  get endpointSetsMap(): BpfMap {
    return this.#object.map(ENDPOINT_SETS_MAP);
  }

  /**
   * Sets the domain sets (and their mark bits) checked for packets arriving on interface
   * `ifindex`, replacing what it had, in one map update. RangeError (nothing written) for
   * more than 64 entries, a bit or code outside markMask or of the wrong kind, a set, bit or code twice.
   */
  setEndpointSets(ifindex: number, markMask: number, entries: readonly EndpointSetEntry[]): void {
    this.endpointSetsMap.update(encodeEndpointKey(ifindex), encodeEndpointSets({ markMask, entries }));
  }

  /** Forgets an interface (its packets are no longer marked); false when it had no entry. */
  removeEndpoint(ifindex: number): boolean {
    return this.endpointSetsMap.delete(encodeEndpointKey(ifindex));
  }

  /** What every interface has now, by ifindex. */
  endpoints(): Map<number, EndpointSets> {
    const out = new Map<number, EndpointSets>();
    for (const [key, value] of this.endpointSetsMap.entries()) out.set(decodeEndpointKey(key), decodeEndpointSets(value));
    return out;
  }

  /** Attaches on tc ingress of `ifname` (this process's network namespace), replacing ours. */
  attach(ifname: string): TcAttachment {
    return attachDnsplaneTc('membershipMark', ifname, 'ingress', this.program);
  }

  /** Detaches from tc ingress of `ifname`; false when it was not attached. */
  detach(ifname: string): boolean {
    return detachDnsplaneTc('membershipMark', ifname, 'ingress');
  }

  /** Kernel id of the program attached on `ifname` ingress (ours or an earlier load's), or undefined. */
  attached(ifname: string): number | undefined {
    return queryDnsplaneTc('membershipMark', ifname, 'ingress');
  }

  /**
   * Attaches the connect marker to the cgroup v2 root by links pinned at
   * <pinRoot>/dnsp_host_connect4 and 6, or switches links already pinned there to this load's
   * programs. From then on the node's TCP connects get the marks of the HOST_ENDPOINT_KEY entry.
   */
  attachHost(): void {
    if (!this.hasConnectMarker) throw new Error('attachHost: this marker was loaded without the connect marker (connectMarker: false)');
    withCgroup2Root((dir) => {
      for (const { program, attachType, pin } of HOST_CONNECT_PROGRAMS) {
        this.#object.program(program).attachCgroupLink(dir, attachType, join(this.pinRoot, pin));
      }
    });
  }

  /** Detaches the connect marker (unpins its links); false when it was not attached. */
  detachHost(): boolean {
    let detached = false;
    for (const { pin } of HOST_CONNECT_PROGRAMS) {
      const path = join(this.pinRoot, pin);
      if (!existsSync(path)) continue;
      unpin(path);
      detached = true;
    }
    return detached;
  }

  /** Kernel ids of the programs the pinned connect-marker links run (absent: not attached). */
  hostAttached(): { readonly connect4?: number; readonly connect6?: number } {
    const ids: { connect4?: number; connect6?: number } = {};
    for (const { hook, pin } of HOST_CONNECT_PROGRAMS) {
      const path = join(this.pinRoot, pin);
      if (!existsSync(path)) continue;
      ids[hook] = pinnedLinkInfo(path).progId;
    }
    return ids;
  }

  /** The connect marker's programs (cgroup/connect4, cgroup/connect6). */
  get hostPrograms(): readonly BpfProgram[] {
    return HOST_CONNECT_PROGRAMS.map(({ program }) => this.#object.program(program));
  }

  /** Closes the fds; pins and tc attachments stay in the kernel (marking goes on). */
  close(): void {
    this.#object.close();
  }

  /** The ifindex of `ifname` in this process's network namespace (NotFoundError if absent). */
  static interfaceIndex(ifname: string): number {
    return interfaceIndex(ifname);
  }
}

/**
 * A dnsp_endpoint_sets pin of an older layout (32 entries per interface before codes) cannot
 * be reused and would fail the load. Its contents are only the interfaces' programming, which
 * every install writes again after attaching the new program, so it is dropped and created
 * afresh; a program still attached keeps the old map until it is replaced.
 */
function dropIncompatibleEndpointSetsPin(pinRoot: string): void {
  unpinIncompatibleMap(join(pinRoot, ENDPOINT_SETS_MAP), { valueSize: ENDPOINT_SETS_LAYOUTS.dnsplane_endpoint_sets.size });
}
