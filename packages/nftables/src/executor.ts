// Runs nft commands and JSON documents: in-process through libnftables (the addon) or, when
// the addon is not built, through the `nft` binary (injected ProcessRunner) on a temp file.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelError, NotSupportedError, type ProcessRunner } from '@dnsplane/core';

export type NftExecutorKind = 'libnftables' | 'nft-cli';

export interface NftExecutor {
  readonly kind: NftExecutorKind;
  /** Apply (or with dryRun, only check) a JSON document; throws KernelError with nft's message. */
  runDocument(document: string, options: { readonly dryRun: boolean }): Promise<void>;
  /** A read command ("list table inet dnsplane"); returns its JSON output. `terse`: without set elements. */
  list(command: readonly string[], options?: { readonly terse?: boolean }): Promise<string>;
  close(): void;
}

interface AddonResult {
  readonly code: number;
  readonly output: string;
  readonly error: string;
}
interface AddonContext {
  run(command: string, dryRun: boolean, terse: boolean): AddonResult;
  /** The same on a libuv worker thread: large documents never block the event loop. */
  runAsync(command: string, dryRun: boolean, terse: boolean): Promise<AddonResult>;
  close(): void;
}
interface Addon {
  NftContext: new () => AddonContext;
}

const ADDON_PATH = new URL('../native/build/Release/nftables_addon.node', import.meta.url);

let addonCache: Addon | undefined | null = null;

/** The libnftables addon, or undefined when `npm run build:native` has not built it. */
export function loadAddon(): Addon | undefined {
  if (addonCache === null) {
    try {
      addonCache = createRequire(import.meta.url)(ADDON_PATH.pathname) as Addon;
    } catch {
      addonCache = undefined;
    }
  }
  return addonCache;
}

export class LibnftablesExecutor implements NftExecutor {
  readonly kind = 'libnftables';
  readonly #context: AddonContext;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(addon: Addon) {
    this.#context = new addon.NftContext();
  }

  static create(): LibnftablesExecutor {
    const addon = loadAddon();
    if (addon === undefined) {
      throw new NotSupportedError('the libnftables addon is not built (npm run build:native -w @dnsplane/nftables)');
    }
    return new LibnftablesExecutor(addon);
  }

  async runDocument(document: string, options: { readonly dryRun: boolean }): Promise<void> {
    const result = await this.#exclusive(() => this.#context.runAsync(document, options.dryRun, false));
    if (result.code !== 0) {
      throw new KernelError(options.dryRun ? 'nft check failed' : 'nft apply failed', result.error.trim());
    }
  }

  async list(command: readonly string[], options: { readonly terse?: boolean } = {}): Promise<string> {
    const result = await this.#exclusive(() => this.#context.runAsync(command.join(' '), false, options.terse ?? false));
    if (result.code !== 0) throw new KernelError(`nft ${command.join(' ')} failed`, result.error.trim());
    return result.output;
  }

  /** The context runs one command at a time. */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.#context.close();
  }
}

/** `nft -j -f FILE`: nft cannot read a Node pipe as its file, so documents go through a temp file. */
export class NftCliExecutor implements NftExecutor {
  readonly kind = 'nft-cli';

  constructor(
    readonly runner: ProcessRunner,
    readonly nftPath = 'nft',
  ) {}

  async runDocument(document: string, options: { readonly dryRun: boolean }): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'dnsplane-nft-'));
    const file = join(dir, 'ruleset.json');
    try {
      await writeFile(file, document, { mode: 0o600 });
      const args = options.dryRun ? ['-j', '-c', '-f', file] : ['-j', '-f', file];
      const result = await this.runner.run(this.nftPath, args);
      if (result.code !== 0) {
        throw new KernelError(options.dryRun ? 'nft check failed' : 'nft apply failed', result.stderr.trim());
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async list(command: readonly string[], options: { readonly terse?: boolean } = {}): Promise<string> {
    const result = await this.runner.run(this.nftPath, ['-j', ...(options.terse === true ? ['-t'] : []), ...command]);
    if (result.code !== 0) throw new KernelError(`nft ${command.join(' ')} failed`, result.stderr.trim());
    return result.stdout;
  }

  close(): void {}
}
