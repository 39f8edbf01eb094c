// The Calico label-selector language: a hand-written tokenizer and recursive-descent parser
// producing a typed AST, the matcher over an endpoint's labels, and a canonical printer.
//
// Grammar (precedence: `!` binds tighter than `&&`, which binds tighter than `||`):
//   selector   := <empty> | or
//   or         := and ( "||" and )*
//   and        := unary ( "&&" unary )*
//   unary      := "!" unary | primary
//   primary    := "(" or ")" | "all" "(" ")" | "has" "(" key ")" | key comparison
//   comparison := "==" string | "!=" string | "in" set | "not" "in" set
//               | "contains" string | "starts" "with" string | "ends" "with" string
//   set        := "{" [ string ( "," string )* ] "}"
//   string     := '…' | "…"   (no escapes: use the other quote to embed one)
//   key        := [A-Za-z0-9_] [A-Za-z0-9_./-]*
// An empty (or all-whitespace) selector means `all()`, as in Calico.

/** A parsed selector. `and`/`or` are n-ary and flattened. */
export type Selector =
  | { readonly kind: 'all' }
  | { readonly kind: 'has'; readonly key: string }
  | { readonly kind: 'equals'; readonly key: string; readonly value: string }
  | { readonly kind: 'notEquals'; readonly key: string; readonly value: string }
  | { readonly kind: 'in'; readonly key: string; readonly values: readonly string[] }
  | { readonly kind: 'notIn'; readonly key: string; readonly values: readonly string[] }
  | { readonly kind: 'contains'; readonly key: string; readonly value: string }
  | { readonly kind: 'startsWith'; readonly key: string; readonly value: string }
  | { readonly kind: 'endsWith'; readonly key: string; readonly value: string }
  | { readonly kind: 'not'; readonly operand: Selector }
  | { readonly kind: 'and'; readonly operands: readonly Selector[] }
  | { readonly kind: 'or'; readonly operands: readonly Selector[] };

/** The selector text is not valid; `column` is 1-based inside the selector text. */
export class SelectorSyntaxError extends Error {
  override readonly name = 'SelectorSyntaxError';
  constructor(
    readonly reason: string,
    readonly column: number,
  ) {
    super(`${reason} (column ${column})`);
  }
}

export const isSelectorSyntaxError = (e: unknown): e is SelectorSyntaxError => e instanceof SelectorSyntaxError;

/** The selector that selects every endpoint. */
export const ALL_SELECTOR: Selector = { kind: 'all' };

const MAX_SELECTOR_LENGTH = 4096;
const MAX_NESTING = 64;

type TokenKind = '(' | ')' | '{' | '}' | ',' | '!' | '==' | '!=' | '&&' | '||' | 'string' | 'word' | 'end';

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  /** 1-based column of the token's first character. */
  readonly column: number;
}

const WORD_START = /[A-Za-z0-9_]/;
const WORD_CHAR = /[A-Za-z0-9_./-]/;

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const ch = source.charAt(i);
    const column = i + 1;
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    const two = source.slice(i, i + 2);
    if (two === '==' || two === '!=' || two === '&&' || two === '||') {
      tokens.push({ kind: two, text: two, column });
      i += 2;
      continue;
    }
    if (ch === '(' || ch === ')' || ch === '{' || ch === '}' || ch === ',' || ch === '!') {
      tokens.push({ kind: ch, text: ch, column });
      i++;
      continue;
    }
    if (ch === '"' || ch === "'") {
      const close = source.indexOf(ch, i + 1);
      if (close < 0) throw new SelectorSyntaxError(`unterminated string literal (missing closing ${ch})`, column);
      tokens.push({ kind: 'string', text: source.slice(i + 1, close), column });
      i = close + 1;
      continue;
    }
    if (WORD_START.test(ch)) {
      let j = i + 1;
      while (j < source.length && WORD_CHAR.test(source.charAt(j))) j++;
      tokens.push({ kind: 'word', text: source.slice(i, j), column });
      i = j;
      continue;
    }
    if (ch === '=') throw new SelectorSyntaxError(`unexpected "=": use "==" to compare`, column);
    if (ch === '&') throw new SelectorSyntaxError(`unexpected "&": use "&&"`, column);
    if (ch === '|') throw new SelectorSyntaxError(`unexpected "|": use "||"`, column);
    throw new SelectorSyntaxError(`unexpected character ${JSON.stringify(ch)}`, column);
  }
  tokens.push({ kind: 'end', text: '', column: source.length + 1 });
  return tokens;
}

function describe(token: Token): string {
  if (token.kind === 'end') return 'end of selector';
  if (token.kind === 'string') return `string ${JSON.stringify(token.text)}`;
  return `"${token.text}"`;
}

class Parser {
  private position = 0;
  private depth = 0;

  constructor(private readonly tokens: readonly Token[]) {}

  private peek(offset = 0): Token {
    const index = Math.min(this.position + offset, this.tokens.length - 1);
    return this.tokens[index] as Token;
  }

  private next(): Token {
    const token = this.peek();
    if (this.position < this.tokens.length - 1) this.position++;
    return token;
  }

  private fail(expected: string, token: Token = this.peek()): never {
    throw new SelectorSyntaxError(`expected ${expected}, found ${describe(token)}`, token.column);
  }

  private expect(kind: TokenKind, expected: string): Token {
    const token = this.peek();
    if (token.kind !== kind) this.fail(expected);
    return this.next();
  }

  private isWord(text: string, offset = 0): boolean {
    const token = this.peek(offset);
    return token.kind === 'word' && token.text === text;
  }

  parseSelector(): Selector {
    if (this.peek().kind === 'end') return ALL_SELECTOR;
    const result = this.parseOr();
    const rest = this.peek();
    if (rest.kind !== 'end') this.fail('"&&", "||" or end of selector', rest);
    return result;
  }

  private parseOr(): Selector {
    const operands = [this.parseAnd()];
    while (this.peek().kind === '||') {
      this.next();
      operands.push(this.parseAnd());
    }
    return combine('or', operands);
  }

  private parseAnd(): Selector {
    const operands = [this.parseUnary()];
    while (this.peek().kind === '&&') {
      this.next();
      operands.push(this.parseUnary());
    }
    return combine('and', operands);
  }

  private nested<T>(at: Token, body: () => T): T {
    if (++this.depth > MAX_NESTING) {
      throw new SelectorSyntaxError(`selector nests deeper than ${MAX_NESTING} levels`, at.column);
    }
    try {
      return body();
    } finally {
      this.depth--;
    }
  }

  private parseUnary(): Selector {
    const token = this.peek();
    if (token.kind === '!') {
      this.next();
      return this.nested(token, () => ({ kind: 'not', operand: this.parseUnary() }));
    }
    return this.parsePrimary();
  }

  private parsePrimary(): Selector {
    const token = this.peek();
    if (token.kind === '(') {
      this.next();
      const inner = this.nested(token, () => this.parseOr());
      this.expect(')', '")" to close the "(" at column ' + token.column);
      return inner;
    }
    if (token.kind !== 'word') this.fail('a label key, "has(…)", "all()", "!" or "("');
    if (token.text === 'all' && this.peek(1).kind === '(') {
      this.next();
      this.next();
      this.expect(')', '")" after "all("');
      return ALL_SELECTOR;
    }
    if (token.text === 'has' && this.peek(1).kind === '(') {
      this.next();
      this.next();
      const key = this.expect('word', 'a label key inside "has(…)"');
      this.expect(')', '")" to close "has("');
      return { kind: 'has', key: key.text };
    }
    this.next();
    return this.parseComparison(token.text);
  }

  private parseComparison(key: string): Selector {
    const op = this.peek();
    switch (op.kind) {
      case '==':
        this.next();
        return { kind: 'equals', key, value: this.parseString('==') };
      case '!=':
        this.next();
        return { kind: 'notEquals', key, value: this.parseString('!=') };
      case 'word':
        if (op.text === 'in') {
          this.next();
          return { kind: 'in', key, values: this.parseSet() };
        }
        if (op.text === 'not' && this.isWord('in', 1)) {
          this.next();
          this.next();
          return { kind: 'notIn', key, values: this.parseSet() };
        }
        if (op.text === 'contains') {
          this.next();
          return { kind: 'contains', key, value: this.parseString('contains') };
        }
        if (op.text === 'starts' && this.isWord('with', 1)) {
          this.next();
          this.next();
          return { kind: 'startsWith', key, value: this.parseString('starts with') };
        }
        if (op.text === 'ends' && this.isWord('with', 1)) {
          this.next();
          this.next();
          return { kind: 'endsWith', key, value: this.parseString('ends with') };
        }
        break;
      default:
        break;
    }
    return this.fail(`an operator after label key "${key}" ("==", "!=", "in", "not in", "contains", "starts with", "ends with")`, op);
  }

  private parseString(after: string): string {
    return this.expect('string', `a quoted string after "${after}"`).text;
  }

  private parseSet(): string[] {
    this.expect('{', '"{" to start a set of strings');
    const values: string[] = [];
    if (this.peek().kind === '}') {
      this.next();
      return values;
    }
    for (;;) {
      values.push(this.expect('string', 'a quoted string in the set').text);
      const token = this.peek();
      if (token.kind === ',') {
        this.next();
        continue;
      }
      if (token.kind === '}') {
        this.next();
        return values;
      }
      this.fail('"," or "}" in the set');
    }
  }
}

function combine(kind: 'and' | 'or', operands: Selector[]): Selector {
  if (operands.length === 1) return operands[0] as Selector;
  const flat: Selector[] = [];
  for (const operand of operands) {
    if (operand.kind === kind) flat.push(...operand.operands);
    else flat.push(operand);
  }
  return { kind, operands: flat };
}

/** Parses selector text; throws SelectorSyntaxError (with a 1-based column) when it is invalid. */
export function parseSelector(text: string): Selector {
  if (text.length > MAX_SELECTOR_LENGTH) {
    throw new SelectorSyntaxError(`selector is longer than ${MAX_SELECTOR_LENGTH} characters`, MAX_SELECTOR_LENGTH + 1);
  }
  return new Parser(tokenize(text)).parseSelector();
}

/** True when an endpoint with these labels is selected. */
export function matchesSelector(selector: Selector, labels: Readonly<Record<string, string>>): boolean {
  const value = (key: string): string | undefined => (Object.hasOwn(labels, key) ? labels[key] : undefined);
  switch (selector.kind) {
    case 'all':
      return true;
    case 'has':
      return value(selector.key) !== undefined;
    case 'equals':
      return value(selector.key) === selector.value;
    case 'notEquals':
      return value(selector.key) !== selector.value;
    case 'in': {
      const v = value(selector.key);
      return v !== undefined && selector.values.includes(v);
    }
    case 'notIn': {
      const v = value(selector.key);
      return v === undefined || !selector.values.includes(v);
    }
    case 'contains': {
      const v = value(selector.key);
      return v !== undefined && v.includes(selector.value);
    }
    case 'startsWith': {
      const v = value(selector.key);
      return v !== undefined && v.startsWith(selector.value);
    }
    case 'endsWith': {
      const v = value(selector.key);
      return v !== undefined && v.endsWith(selector.value);
    }
    case 'not':
      return !matchesSelector(selector.operand, labels);
    case 'and':
      return selector.operands.every((operand) => matchesSelector(operand, labels));
    case 'or':
      return selector.operands.some((operand) => matchesSelector(operand, labels));
  }
}

function quote(value: string): string {
  return value.includes('"') ? `'${value}'` : `"${value}"`;
}

function formatSet(values: readonly string[]): string {
  const unique = [...new Set(values)].sort();
  return `{${unique.map(quote).join(', ')}}`;
}

/**
 * Canonical text: double quotes (single when the value holds a double quote), sets sorted and
 * without duplicates, `&&`/`||` flattened, parentheses only where precedence needs them and
 * around the operand of `!` unless it is `has(…)`, `all()` or another `!`.
 * parseSelector(formatSelector(s)) gives back an equal selector.
 */
export function formatSelector(selector: Selector): string {
  switch (selector.kind) {
    case 'all':
      return 'all()';
    case 'has':
      return `has(${selector.key})`;
    case 'equals':
      return `${selector.key} == ${quote(selector.value)}`;
    case 'notEquals':
      return `${selector.key} != ${quote(selector.value)}`;
    case 'in':
      return `${selector.key} in ${formatSet(selector.values)}`;
    case 'notIn':
      return `${selector.key} not in ${formatSet(selector.values)}`;
    case 'contains':
      return `${selector.key} contains ${quote(selector.value)}`;
    case 'startsWith':
      return `${selector.key} starts with ${quote(selector.value)}`;
    case 'endsWith':
      return `${selector.key} ends with ${quote(selector.value)}`;
    case 'not': {
      const inner = formatSelector(selector.operand);
      const bare = selector.operand.kind === 'has' || selector.operand.kind === 'all' || selector.operand.kind === 'not';
      return bare ? `!${inner}` : `!(${inner})`;
    }
    case 'and':
      return selector.operands
        .map((operand) => (operand.kind === 'or' ? `(${formatSelector(operand)})` : formatSelector(operand)))
        .join(' && ');
    case 'or':
      return selector.operands.map(formatSelector).join(' || ');
  }
}
