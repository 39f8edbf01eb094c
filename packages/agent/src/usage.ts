// Command-line parsing: node:util parseArgs (strict) for the shape, zod for the values.
// Every mistake becomes a UsageError (exit code 2) whose message names the flag or command.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { z } from 'zod';
import { DnsplaneError } from '@dnsplane/core';

/** Wrong command line: unknown command or flag, missing or bad value. Exit code 2. */
export class UsageError extends DnsplaneError {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    /** The command whose help is worth reading, if known. */
    readonly command?: string,
  ) {
    super(message);
  }
}
export const isUsageError = (e: unknown): e is UsageError => e instanceof UsageError;

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

/** Flags every command accepts. */
export const GLOBAL_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  'log-level': { type: 'string' },
} as const satisfies OptionSpecs;

/**
 * Parses `argv` for `command` with `options` (plus the global ones), then validates the values
 * with `schema`. Positionals are not accepted unless `allowPositionals` is set.
 */
export function parseCommandLine<S extends z.ZodType>(
  command: string,
  argv: readonly string[],
  options: OptionSpecs,
  schema: S,
  allowPositionals = false,
): z.infer<S> & { readonly positionals: readonly string[] } {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...GLOBAL_OPTIONS, ...options },
      strict: true,
      allowPositionals,
    }) as { values: Record<string, unknown>; positionals: string[] };
  } catch (error) {
    throw new UsageError(describeParseError(command, error), command);
  }
  const result = schema.safeParse(parsed.values);
  if (!result.success) {
    const issue = result.error.issues[0];
    const flag = issue?.path[0] === undefined ? '' : `--${String(issue.path[0])}: `;
    throw new UsageError(`dnsplane ${command}: ${flag}${issue?.message ?? 'invalid arguments'}`, command);
  }
  return { ...(result.data as object), positionals: parsed.positionals } as z.infer<S> & {
    readonly positionals: readonly string[];
  };
}

function describeParseError(command: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  // parseArgs messages already name the option ("Unknown option '--x'"); keep them, minus the
  // advice about '--' which does not apply to dnsplane.
  const trimmed = message.replace(/\. To specify a positional argument.*$/s, '').replace(/\s+$/, '');
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    return `dnsplane ${command}: unexpected argument: ${trimmed.replace(/^Unexpected argument '([^']*)'.*$/s, '$1')}`;
  }
  return `dnsplane ${command}: ${trimmed}`;
}
