// Turning zod validation issues into InputProblems with one clear reason each, and the
// strict-object helper every input schema uses so that a misspelt field (`destinaton`) is an
// error that names the field and suggests the right one.
import { z } from 'zod';
import type { InputProblem } from './errors.js';

type Shape = Record<string, z.ZodType>;

/** Edit distance, for "did you mean" suggestions on unknown fields. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] as number;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, previous + cost);
      previous = current;
    }
  }
  return row[b.length] as number;
}

/** The allowed field closest to an unknown one, when it is close enough to be a typo. */
export function suggestField(unknown: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of allowed) {
    const d = candidate.toLowerCase() === unknown.toLowerCase() ? 0 : distance(unknown, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(unknown.length / 3)) ? best : undefined;
}

export function unknownFieldReason(key: string, allowed: readonly string[]): string {
  const suggestion = suggestField(key, allowed);
  const hint = suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`;
  return `unknown field${hint}; allowed fields: ${allowed.join(', ')}`;
}

/** A z.strictObject whose unknown-key error names the allowed fields and the likely intended one. */
export function strictObject<T extends Shape>(shape: T) {
  const allowed = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') return undefined;
      const keys = issue.keys;
      if (keys.length === 1) return unknownFieldReason(keys[0] as string, allowed);
      return `unknown fields ${keys.map((k) => `"${k}"`).join(', ')}; allowed fields: ${allowed.join(', ')}`;
    },
  });
}

/** Formats a path like spec.egress[0].destination.domains[1]. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else {
      const text = String(part);
      const plain = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(text);
      if (plain) out += out === '' ? text : `.${text}`;
      else out += `[${JSON.stringify(text)}]`;
    }
  }
  return out;
}

/** Short human description of a value found in the input. */
export function describeValue(value: unknown): string {
  if (value === null) return 'an empty value (null)';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'string': {
      const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
      return `the string ${JSON.stringify(shown)}`;
    }
    case 'number':
      return `the number ${value}`;
    case 'boolean':
      return `${value}`;
    case 'object':
      return 'a mapping';
    default:
      return typeof value;
  }
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
  null: 'null',
};

function expectedText(expected: string): string {
  return EXPECTED[expected] ?? expected;
}

type Issue = z.core.$ZodIssue;

interface Located {
  readonly path: readonly PropertyKey[];
  readonly reason: string;
  readonly column?: number;
}

function boundText(issue: { readonly origin: string; readonly inclusive?: boolean }, bound: number | bigint, side: 'min' | 'max'): string {
  const inclusive = issue.inclusive !== false;
  switch (issue.origin) {
    case 'array':
    case 'set':
      return side === 'min' ? `must have at least ${bound} item${bound === 1 ? '' : 's'}` : `must have at most ${bound} items`;
    case 'string':
      return side === 'min'
        ? Number(bound) === 1
          ? 'must not be empty'
          : `must be at least ${bound} characters long`
        : `must be at most ${bound} characters long`;
    default:
      if (side === 'min') return inclusive ? `must be at least ${bound}` : `must be greater than ${bound}`;
      return inclusive ? `must be at most ${bound}` : `must be less than ${bound}`;
  }
}

/** Enum values as text; spellings that only differ in case from an earlier one are left out. */
function valuesText(values: readonly unknown[]): string {
  const seen = new Set<string>();
  const shown: string[] = [];
  for (const value of values) {
    const key = typeof value === 'string' ? value.toLowerCase() : JSON.stringify(value);
    if (seen.has(key)) continue;
    seen.add(key);
    shown.push(JSON.stringify(value));
  }
  return shown.length === 1 ? (shown[0] as string) : `one of ${shown.join(', ')}`;
}

/**
 * When a union branch failed only because the value has the wrong type for it, what that
 * branch expected ("a string"); undefined when the branch got further than the type check.
 */
function wrongType(branch: readonly Issue[], input: unknown): string | undefined {
  const only = branch.length === 1 ? branch[0] : undefined;
  if (only === undefined || only.path.length !== 0) return undefined;
  if (only.code === 'invalid_type') {
    if (only.expected === 'int' && typeof input === 'number') return undefined;
    return expectedText(only.expected);
  }
  if (only.code === 'invalid_value') {
    const sameType = only.values.some((value) => typeof value === typeof input);
    return sameType ? undefined : valuesText(only.values);
  }
  return undefined;
}

function locate(issue: Issue, prefix: readonly PropertyKey[]): Located[] {
  const path = [...prefix, ...issue.path];
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case 'invalid_type':
      if (issue.expected === 'never') return [{ path, reason: issue.message }];
      if (input === undefined) return [{ path, reason: 'required field is missing' }];
      {
        // zod reports non-finite numbers (YAML .inf, .nan) with `received` and no usable input.
        const received = (issue as { received?: unknown }).received;
        if (received === 'Infinity' || received === 'NaN') {
          return [{ path, reason: `expected a finite number, got ${received}` }];
        }
      }
      return [{ path, reason: `expected ${expectedText(issue.expected)}, got ${describeValue(input)}` }];
    case 'too_small':
      return [{ path, reason: `${boundText(issue, issue.minimum, 'min')}, got ${describeValue(input)}` }];
    case 'too_big':
      return [{ path, reason: `${boundText(issue, issue.maximum, 'max')}, got ${describeValue(input)}` }];
    case 'invalid_value': {
      const expected = valuesText(issue.values);
      if (input === undefined) return [{ path, reason: `required field is missing: expected ${expected}` }];
      return [{ path, reason: `expected ${expected}, got ${describeValue(input)}` }];
    }
    case 'unrecognized_keys':
      if (issue.keys.length === 1) return [{ path: [...path, issue.keys[0] as string], reason: issue.message }];
      return [{ path, reason: issue.message }];
    case 'invalid_union': {
      // Prefer the branch that got past the type check: its issues are the useful ones.
      const branches = issue.errors.filter((branch) => wrongType(branch, input) === undefined);
      if (branches.length > 0) {
        const best = branches.reduce((a, b) => (b.length < a.length ? b : a));
        return best.flatMap((inner) => locate(inner, path));
      }
      const expected = issue.errors
        .map((branch) => wrongType(branch, input))
        .filter((text): text is string => text !== undefined);
      const unique = [...new Set(expected)];
      return [{ path, reason: `expected ${unique.join(' or ')}, got ${describeValue(input)}` }];
    }
    case 'invalid_key':
      return issue.issues.flatMap((inner) =>
        locate(inner, path).map((located) => ({ ...located, reason: `invalid key: ${located.reason}` })),
      );
    case 'invalid_element':
      return issue.issues.flatMap((inner) => locate(inner, path));
    case 'invalid_format':
      return [{ path, reason: issue.message }];
    case 'custom': {
      const column = (issue.params as { column?: unknown } | undefined)?.column;
      return [{ path, reason: issue.message, ...(typeof column === 'number' ? { column } : {}) }];
    }
    default:
      return [{ path, reason: issue.message }];
  }
}

/** Converts zod issues into problems located in `file` (document index optional). */
export function issuesToProblems(
  issues: readonly Issue[],
  where: { readonly file: string; readonly document?: number; readonly prefix?: readonly PropertyKey[] },
): InputProblem[] {
  const problems: InputProblem[] = [];
  const seen = new Set<string>();
  for (const issue of issues) {
    for (const located of locate(issue, where.prefix ?? [])) {
      const problem: InputProblem = {
        file: where.file,
        ...(where.document === undefined ? {} : { document: where.document }),
        field: formatPath(located.path),
        reason: located.reason,
        ...(located.column === undefined ? {} : { column: located.column }),
      };
      const key = `${problem.field}\u0000${problem.reason}`;
      if (!seen.has(key)) {
        seen.add(key);
        problems.push(problem);
      }
    }
  }
  return problems;
}

/** A custom issue for a transform or refinement, optionally with a path and a selector column. */
export type CustomIssue = {
  [key: string]: unknown;
  code: 'custom';
  message: string;
  input: unknown;
  path?: PropertyKey[];
  params?: { column: number };
};

export function customIssue(message: string, input: unknown, options: { path?: PropertyKey[]; column?: number } = {}): CustomIssue {
  return {
    code: 'custom',
    message,
    input,
    ...(options.path === undefined ? {} : { path: options.path }),
    ...(options.column === undefined ? {} : { params: { column: options.column } }),
  };
}
