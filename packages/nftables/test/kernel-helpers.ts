// Helpers for the kernel tests: the real nft binary, unique names, condition waits.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const uniqueSuffix = (): string => randomBytes(4).toString('hex');

export async function nft(...args: string[]): Promise<string> {
  // room for a set of 100,000 elements (~7 MB of JSON)
  const { stdout } = await execFileAsync('nft', args, { maxBuffer: 64 << 20 });
  return stdout;
}

export async function nftJson(...args: string[]): Promise<{ nftables: Array<Record<string, unknown>> }> {
  return JSON.parse(await nft('-j', ...args)) as { nftables: Array<Record<string, unknown>> };
}

export async function tableExists(family: string, name: string): Promise<boolean> {
  const listing = await nftJson('list', 'tables');
  return listing.nftables.some((o) => {
    const t = o['table'] as { family?: string; name?: string } | undefined;
    return t?.family === family && t.name === name;
  });
}

export async function deleteTableIfPresent(family: string, name: string): Promise<void> {
  if (await tableExists(family, name)) await nft('delete', 'table', family, name);
}

export interface ListedElement {
  readonly val: string;
  readonly timeout?: number;
  readonly expires?: number;
}

export async function setElements(table: string, set: string): Promise<ListedElement[]> {
  const listing = await nftJson('list', 'set', 'inet', table, set);
  const found = listing.nftables.find((o) => 'set' in o)?.['set'] as { elem?: unknown[] } | undefined;
  return (found?.elem ?? []).map((e) =>
    typeof e === 'string' ? { val: e } : ((e as { elem: ListedElement }).elem as ListedElement),
  );
}

/** Polls `condition` until it holds or the deadline passes (then throws with `what`). */
export async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
