// The structure of a parsed domain pattern, shared by the TypeScript matcher, the compiler
// and the kernel domain-table encoder. Parsing and matching live in domain-pattern.ts.

export type PatternLabel =
  /** A whole label, lower-case, punycode (xn--) for IDNs. */
  | { readonly kind: 'literal'; readonly text: string }
  /** A label with `*` inside it (`api-*`): the literal parts between the stars, in order. */
  | { readonly kind: 'glob'; readonly parts: readonly string[] }
  /** Exactly one label of any content (Cilium's reading of a whole-label `*`). */
  | { readonly kind: 'anyOne' }
  /** One or more labels (Calico's reading of a whole-label `*`). */
  | { readonly kind: 'anyMany' };

export interface DomainPattern {
  /** Canonical text: equal patterns have equal text; used as a key and in logs. */
  readonly text: string;
  /** Labels left to right, as written ("a.b.com" → a, b, com). */
  readonly labels: readonly PatternLabel[];
  /** True when every label is a literal. */
  readonly exact: boolean;
}
