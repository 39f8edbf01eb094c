// Learned state: what the DNS parser taught a dataplane, in a form every driver can export
// and import (migration, restarts).
import type { IpFamily } from './desired-state.js';

export interface LearnedEntry {
  readonly setId: number;
  readonly family: IpFamily;
  /** Canonical address text ("198.18.1.2", "fd00::1"). */
  readonly address: string;
  /** Wall-clock expiry, milliseconds since the Unix epoch. */
  readonly expiresAt: number;
  /** The DNS name the address was learned from, when known. */
  readonly name?: string;
}
