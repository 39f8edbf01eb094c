// Parsing, normalisation and matching of domain patterns (the model is in
// domain-pattern-model.ts; the semantics are documented in packages/core/README.md).
//
// Flavors:
//   calico          plain strings as Calico writes them: a whole-label `*` is one or more labels.
//   cilium-name     Cilium `matchName`: an exact name, no wildcard at all.
//   cilium-pattern  Cilium `matchPattern`: a whole-label `*` is exactly one label; a leading
//                   `**.` is one or more labels; a bare `*` matches every name.
// In every flavor a `*` inside a label (`api-*`) matches zero or more characters of that label.
import { domainToASCII } from 'node:url';
import type { DomainPattern, PatternLabel } from './domain-pattern-model.js';
import { DnsplaneError } from './errors.js';

export type DomainPatternFlavor = 'calico' | 'cilium-name' | 'cilium-pattern';

/** A pattern (or name) that cannot match any valid DNS name; `reason` says why. */
export class InvalidDomainPatternError extends DnsplaneError {
  override readonly name = 'InvalidDomainPatternError';
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super(`invalid domain pattern ${JSON.stringify(input)}: ${reason}`);
  }
}

export const isInvalidDomainPattern = (e: unknown): e is InvalidDomainPatternError =>
  e instanceof InvalidDomainPatternError;

/** Longest label (RFC 1035). */
export const MAX_LABEL_LENGTH = 63;
/** Longest name in text form without the trailing dot (255 bytes in wire form). */
export const MAX_NAME_LENGTH = 253;

/** Characters a label may hold after IDNA conversion: LDH plus underscore (SRV, DKIM names). */
const LABEL_CHARS = /^[a-z0-9_-]+$/;
/** Full stops IDNA treats as label separators (ASCII, ideographic, full-width, half-width). */
const SEPARATORS = /[.\u3002\uff0e\uff61]/;
// eslint-disable-next-line no-control-regex
const ASCII_ONLY = /^[\x00-\x7f]*$/;

/**
 * Lower-cases one label and converts an internationalised label to punycode with the
 * platform's IDNA (node:url domainToASCII). Returns the reason text when it cannot.
 */
function asciiLabel(label: string): string | { reason: string } {
  if (ASCII_ONLY.test(label)) {
    const lower = label.toLowerCase();
    if (lower.startsWith('xn--') && !lower.includes('*') && domainToASCII(lower) === '') {
      return { reason: `label "${label}" is not valid punycode` };
    }
    return lower;
  }
  if (label.includes('*')) {
    return { reason: `label "${label}" mixes a wildcard with non-ASCII characters (write it in punycode)` };
  }
  const converted = domainToASCII(label);
  if (converted === '' || converted.includes('.')) {
    return { reason: `label "${label}" is not a valid internationalised label` };
  }
  return converted;
}

/** Splits input into lower-case ASCII labels; the one trailing dot of an absolute name is dropped. */
function splitLabels(input: string): string[] {
  if (input.length === 0) throw new InvalidDomainPatternError(input, 'empty');
  const raw = input.split(SEPARATORS);
  if (raw.length > 1 && raw[raw.length - 1] === '') raw.pop();
  const labels: string[] = [];
  for (const label of raw) {
    if (label === '') {
      throw new InvalidDomainPatternError(input, input === '.' ? 'the root name alone matches nothing' : 'empty label (two dots in a row, or a leading dot)');
    }
    const ascii = asciiLabel(label);
    if (typeof ascii !== 'string') throw new InvalidDomainPatternError(input, ascii.reason);
    labels.push(ascii);
  }
  return labels;
}

function checkLiteral(input: string, label: string): void {
  if (!LABEL_CHARS.test(label)) {
    throw new InvalidDomainPatternError(
      input,
      `label "${label}" holds a character other than letters, digits, "-", "_"${label.includes('*') ? ' (no wildcard allowed here)' : ''}`,
    );
  }
  if (label.length > MAX_LABEL_LENGTH) {
    throw new InvalidDomainPatternError(input, `label "${label}" is longer than ${MAX_LABEL_LENGTH} characters`);
  }
}

function parseLabel(input: string, label: string, flavor: DomainPatternFlavor, position: number): PatternLabel {
  if (!label.includes('*')) {
    checkLiteral(input, label);
    return { kind: 'literal', text: label };
  }
  if (flavor === 'cilium-name') {
    throw new InvalidDomainPatternError(input, 'a matchName is an exact name: "*" is not allowed (use matchPattern)');
  }
  if (label === '*') return flavor === 'calico' ? { kind: 'anyMany' } : { kind: 'anyOne' };
  if (label === '**') {
    if (flavor === 'cilium-pattern' && position === 0) return { kind: 'anyMany' };
    throw new InvalidDomainPatternError(
      input,
      flavor === 'calico'
        ? '"**" is not a wildcard here: a whole-label "*" already matches one or more labels'
        : '"**" is only allowed as the first label ("**.example.com")',
    );
  }
  if (label.includes('**')) {
    throw new InvalidDomainPatternError(input, `label "${label}" holds "**": write a single "*"`);
  }
  const parts = label.split('*');
  for (const part of parts) {
    if (part !== '' && !LABEL_CHARS.test(part)) {
      throw new InvalidDomainPatternError(input, `label "${label}" holds a character other than letters, digits, "-", "_", "*"`);
    }
  }
  const fixed = parts.reduce((sum, part) => sum + part.length, 0);
  if (fixed > MAX_LABEL_LENGTH) {
    throw new InvalidDomainPatternError(input, `label "${label}" needs more than ${MAX_LABEL_LENGTH} characters`);
  }
  return { kind: 'glob', parts };
}

/** Fewest characters (text form, dots included) a name matching these labels can have. */
function shortestMatch(labels: readonly PatternLabel[]): number {
  let total = -1;
  for (const label of labels) {
    let len = 1;
    if (label.kind === 'literal') len = label.text.length;
    else if (label.kind === 'glob') len = Math.max(1, label.parts.reduce((sum, part) => sum + part.length, 0));
    total += len + 1;
  }
  return total;
}

function labelText(label: PatternLabel, flavor: 'calico' | 'cilium'): string {
  switch (label.kind) {
    case 'literal':
      return label.text;
    case 'glob':
      return label.parts.join('*');
    case 'anyOne':
      return '*';
    case 'anyMany':
      return flavor === 'calico' ? '*' : '**';
  }
}

/**
 * Canonical text: Calico syntax when the pattern holds no exactly-one-label wildcard (so a
 * Calico string, a Cilium matchName and a Cilium matchPattern without a whole-label `*` that
 * mean the same thing print the same); otherwise `cilium:` followed by Cilium syntax.
 */
export function domainPatternText(labels: readonly PatternLabel[]): string {
  const cilium = labels.some((label) => label.kind === 'anyOne');
  const body = labels.map((label) => labelText(label, cilium ? 'cilium' : 'calico')).join('.');
  return cilium ? `cilium:${body}` : body;
}

/**
 * Parses a domain pattern as written by users of `flavor`. Throws InvalidDomainPatternError
 * (with a reason) for anything that cannot match a valid DNS name.
 */
export function parseDomainPattern(input: string, flavor: DomainPatternFlavor): DomainPattern {
  if (/\s/.test(input)) throw new InvalidDomainPatternError(input, 'holds white space');
  const raw = splitLabels(input);
  if (flavor === 'cilium-pattern' && raw.length === 1 && raw[0] === '*') {
    // Cilium documents a bare "*" as "every name".
    const labels: PatternLabel[] = [{ kind: 'anyMany' }];
    return { text: domainPatternText(labels), labels, exact: false };
  }
  const labels = raw.map((label, i) => parseLabel(input, label, flavor, i));
  if (shortestMatch(labels) > MAX_NAME_LENGTH) {
    throw new InvalidDomainPatternError(input, `every matching name would be longer than ${MAX_NAME_LENGTH} characters`);
  }
  return {
    text: domainPatternText(labels),
    labels,
    exact: labels.every((label) => label.kind === 'literal'),
  };
}

/**
 * The canonical form of a DNS name: lower case, no trailing dot, IDN labels in punycode.
 * Throws InvalidDomainPatternError when `name` is not a valid name (wildcards included).
 */
export function normalizeDomainName(name: string): string {
  if (/\s/.test(name)) throw new InvalidDomainPatternError(name, 'holds white space');
  const labels = splitLabels(name);
  for (const label of labels) checkLiteral(name, label);
  const text = labels.join('.');
  if (text.length > MAX_NAME_LENGTH) {
    throw new InvalidDomainPatternError(name, `longer than ${MAX_NAME_LENGTH} characters`);
  }
  return text;
}

/** Whether one name label (lower-case) matches a glob label's parts (`*` = zero or more characters). */
export function matchesGlob(parts: readonly string[], label: string): boolean {
  const first = parts[0] ?? '';
  const last = parts[parts.length - 1] ?? '';
  if (parts.length === 1) return label === first;
  if (label.length < first.length + last.length) return false;
  if (!label.startsWith(first) || !label.endsWith(last)) return false;
  // Middle parts, leftmost-first: greedy is optimal for `*` separated literals.
  let at = first.length;
  const end = label.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i] ?? '';
    const found = label.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

function labelMatches(label: PatternLabel, name: string): boolean {
  switch (label.kind) {
    case 'literal':
      return label.text === name;
    case 'glob':
      return matchesGlob(label.parts, name);
    case 'anyOne':
    case 'anyMany':
      return true;
  }
}

/**
 * Whether the pattern matches a name given as its labels, already lower-cased (ASCII only:
 * bytes outside ASCII are compared as they are). Names come in this form from the DNS wire.
 */
export function matchesLabels(pattern: DomainPattern, name: readonly string[]): boolean {
  const labels = pattern.labels;
  // failed[p * (n+1) + q]: pattern suffix from p cannot match name suffix from q.
  const n = name.length;
  const failed = new Set<number>();
  const match = (p: number, q: number): boolean => {
    if (p === labels.length) return q === n;
    if (q === n) return false;
    const key = p * (n + 1) + q;
    if (failed.has(key)) return false;
    const label = labels[p];
    let ok = false;
    if (label === undefined) ok = false;
    else if (label.kind === 'anyMany') {
      // One or more labels: leave at least one label per remaining pattern label.
      for (let take = 1; !ok && q + take <= n; take++) ok = match(p + 1, q + take);
    } else {
      ok = labelMatches(label, name[q] ?? '') && match(p + 1, q + 1);
    }
    if (!ok) failed.add(key);
    return ok;
  };
  return match(0, 0);
}

/**
 * Whether `pattern` matches the DNS name `name` (any case, optional trailing dot, Unicode or
 * punycode). A name that is not valid matches nothing.
 */
export function matchesDomain(pattern: DomainPattern, name: string): boolean {
  let normal: string;
  try {
    normal = normalizeDomainName(name);
  } catch (e) {
    if (isInvalidDomainPattern(e)) return false;
    throw e;
  }
  return matchesLabels(pattern, normal.split('.'));
}
