// The handle every nft user in dnsplane goes through: apply one transaction atomically and
// read tables back. Implemented over libnftables/nft JSON (json-handle.ts) and in memory for
// unit tests (fake-handle.ts).
import type { NftTableRef } from './nft-model.js';
import type { NftTableSnapshot } from './snapshot.js';
import type { NftTransaction } from './transaction.js';

export interface NftHandle {
  /** Apply every operation or none (throws KernelError and changes nothing on failure). */
  apply(transaction: NftTransaction): Promise<void>;
  /** Validate against the kernel without committing (nft -c / dry run). */
  check(transaction: NftTransaction): Promise<void>;
  listTables(): Promise<NftTableRef[]>;
  /** The table's chains, rules and sets with elements; undefined when it does not exist. */
  listTable(table: NftTableRef): Promise<NftTableSnapshot | undefined>;
}

/** pino-compatible subset: the driver logs through whatever the agent injects. */
export interface NftLogger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

export const silentLogger: NftLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
