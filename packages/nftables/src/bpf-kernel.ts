// TcMembershipKernel over @dnsplane/bpf-parser: the DNS parser (DnsParserProgram) and the
// membership marker (MembershipMarker), attached with tc at fixed priorities and handles so a
// re-attach replaces and `remove()` finds them again from another process.
import { isNotFound, NotSupportedError, type Clock } from '@dnsplane/core';
import * as bpf from '@dnsplane/bpf-parser';
import type { MarkerHandle, ParserHandle, TcDirection, TcMembershipKernel, TcProgramKind } from './tc-membership.js';
import { sysfsInterfaces } from './tc-membership.js';
import type { MarkedSet } from './mark-bits.js';

/** Where our programs sit on a clsact hook: distinct from each other and from tc defaults (1). */
export const TC_SLOTS: Readonly<Record<TcProgramKind, { readonly priority: number; readonly handle: number }>> = {
  parser: { priority: 0xd0, handle: 0xd05 },
  marker: { priority: 0xd1, handle: 0xd06 },
};

/** What this package needs of bpf-parser's MembershipMarker (delivered by its owner). */
interface MembershipMarkerApi {
  setEndpointSets(ifindex: number, markMask: number, entries: readonly MarkedSet[]): void;
  readonly program?: bpf.BpfProgram;
  attach?(ifname: string, options?: { priority?: number; handle?: number }): unknown;
  close(): void;
}
interface MembershipMarkerClass {
  load(options: { pinRoot: string }): MembershipMarkerApi;
}

function markerClass(): MembershipMarkerClass {
  const found = (bpf as Record<string, unknown>)['MembershipMarker'];
  if (typeof found !== 'function') {
    throw new NotSupportedError('this build of @dnsplane/bpf-parser has no MembershipMarker (the tc membership mark program)');
  }
  return found as unknown as MembershipMarkerClass;
}

export function bpfTcMembershipKernel(clock: Clock): TcMembershipKernel {
  return {
    loadParser(pinRoot: string): ParserHandle {
      const parser = bpf.DnsParserProgram.load({ pinRoot });
      return {
        configure: (dns) => parser.configure(dns),
        setDomainSets: (sets) => parser.setDomainSets(sets),
        exportLearned: (c) => parser.exportLearned(c),
        counters: () => ({ ...parser.counters() }),
        attach: (ifname: string, direction: TcDirection) => {
          bpf.attachTc({ ifname, direction, program: parser.tcClassifier, ...TC_SLOTS.parser, replace: true });
        },
        consume: (onLearned, onError) => {
          const consumer = new bpf.LearnedEventConsumer(parser.map('events'), (entry) => onLearned(entry), { clock, onError });
          return () => consumer.close();
        },
        close: () => parser.close(),
      };
    },
    loadMarker(pinRoot: string): MarkerHandle {
      const marker = markerClass().load({ pinRoot });
      return {
        setEndpointSets: (ifindex, markMask, entries) => marker.setEndpointSets(ifindex, markMask, entries),
        attach: (ifname) => {
          if (marker.program !== undefined) {
            bpf.attachTc({ ifname, direction: 'ingress', program: marker.program, ...TC_SLOTS.marker, replace: true });
          } else {
            marker.attach?.(ifname, TC_SLOTS.marker);
          }
        },
        close: () => marker.close(),
      };
    },
    detach(kind: TcProgramKind, ifname: string, direction: TcDirection): boolean {
      try {
        if (bpf.queryTc({ ifname, direction, ...TC_SLOTS[kind] }) === undefined) return false;
        bpf.detachTc({ ifname, direction, ...TC_SLOTS[kind] });
        return true;
      } catch (error) {
        if (isNotFound(error)) return false;
        throw error;
      }
    },
    interfaces: () => sysfsInterfaces(),
    removePins: (pinRoot) => bpf.DnsParserProgram.removePins(pinRoot),
  };
}
