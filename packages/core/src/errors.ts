// Error classes with predicates: call sites test kinds, never message text.

/** Where a problem was found in the user's input. */
export interface InputProblem {
  readonly file: string;
  /** 0-based index of the document in a multi-document file; absent for the config file. */
  readonly document?: number;
  /** Field path, e.g. "spec.egress[0].destination.domains[1]". */
  readonly field: string;
  readonly reason: string;
  /** 1-based column inside the field's value, for selectors. */
  readonly column?: number;
}

export function formatProblem(p: InputProblem): string {
  const doc = p.document === undefined ? '' : `#${p.document}`;
  const col = p.column === undefined ? '' : ` (column ${p.column})`;
  return `${p.file}${doc}: ${p.field || '(document)'}: ${p.reason}${col}`;
}

export class DnsplaneError extends Error {
  override readonly name: string = 'DnsplaneError';
}

/** Bad config or resources: nothing was applied. */
export class InvalidInputError extends DnsplaneError {
  override readonly name = 'InvalidInputError';
  constructor(readonly problems: readonly InputProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

export class NotFoundError extends DnsplaneError {
  override readonly name = 'NotFoundError';
}

/** The kernel or the machine lacks something the requested feature needs. */
export class NotSupportedError extends DnsplaneError {
  override readonly name = 'NotSupportedError';
}

/** A kernel call or tool failed; `detail` holds the tool output or verifier log. */
export class KernelError extends DnsplaneError {
  override readonly name = 'KernelError';
  constructor(message: string, readonly detail: string = '', readonly errno?: number) {
    super(detail ? `${message}: ${detail}` : message);
  }
}

export const isInvalidInput = (e: unknown): e is InvalidInputError => e instanceof InvalidInputError;
export const isNotFound = (e: unknown): e is NotFoundError => e instanceof NotFoundError;
export const isNotSupported = (e: unknown): e is NotSupportedError => e instanceof NotSupportedError;
export const isKernelError = (e: unknown): e is KernelError => e instanceof KernelError;
