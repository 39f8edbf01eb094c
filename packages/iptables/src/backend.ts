// The two iptables backends and how `auto` picks one: follow what the host already uses.
import type { IpFamily, IptablesBackend, ProcessRunner } from '@dnsplane/core';
import { IPTABLES_BACKENDS, KernelError, NotSupportedError } from '@dnsplane/core';
import type { ProcessResult } from '@dnsplane/core';
import { z } from 'zod';

/** The two tool sets; `auto` (core's `IptablesBackend`) resolves to one of them. */
export const RESOLVED_BACKENDS = ['legacy', 'nft'] as const;
export type ResolvedBackend = (typeof RESOLVED_BACKENDS)[number];

/** `iptables.backend` in the config (core's config schema uses the same values). */
export const backendChoiceSchema = z.enum(IPTABLES_BACKENDS);
export type BackendChoice = IptablesBackend;

export type IptablesTool = 'restore' | 'save';

/** `iptables-nft-restore`, `ip6tables-legacy-save`, … */
export function toolName(backend: ResolvedBackend, family: IpFamily, tool: IptablesTool): string {
  return `${family === 4 ? 'iptables' : 'ip6tables'}-${backend}-${tool}`;
}

/**
 * Runs one iptables tool; a tool that is not installed (spawn ENOENT, or exit code 127 from a
 * wrapper such as nsenter) is NotSupportedError naming the package to install.
 */
export async function runTool(runner: ProcessRunner, command: string, args: readonly string[], input?: string): Promise<ProcessResult> {
  const missing = (): NotSupportedError =>
    new NotSupportedError(`${command} is not installed: the iptables dataplane needs the iptables package (legacy and nft tools)`);
  let result: ProcessResult;
  try {
    result = await runner.run(command, args, input === undefined ? {} : { input });
  } catch (error) {
    if (error instanceof Error && (error as NodeJS.ErrnoException).code === 'ENOENT') throw missing();
    throw error;
  }
  if (result.code === 127) throw missing();
  return result;
}

/** Rules and user chains in iptables-save output (comments, table headers and COMMIT excluded). */
export function countSavedObjects(output: string): number {
  let count = 0;
  for (const line of output.split('\n')) {
    if (line.startsWith('-A ')) count += 1;
    else if (line.startsWith(':') && !/^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) /.test(line)) count += 1;
  }
  return count;
}

/**
 * `auto`: the backend whose tables (IPv4 and IPv6) hold more rules and user chains; nft when
 * neither holds any (or on a tie), as current distributions default to it.
 */
export async function detectBackend(runner: ProcessRunner): Promise<ResolvedBackend> {
  const counts: Record<ResolvedBackend, number> = { legacy: 0, nft: 0 };
  for (const backend of RESOLVED_BACKENDS) {
    for (const family of [4, 6] as const) {
      const command = toolName(backend, family, 'save');
      const result = await runTool(runner, command, []);
      if (result.code !== 0) throw new KernelError(`${command} failed`, result.stderr.trim());
      counts[backend] += countSavedObjects(result.stdout);
    }
  }
  return counts.legacy > counts.nft ? 'legacy' : 'nft';
}

export async function resolveBackend(choice: BackendChoice, runner: ProcessRunner): Promise<ResolvedBackend> {
  return choice === 'auto' ? detectBackend(runner) : choice;
}
