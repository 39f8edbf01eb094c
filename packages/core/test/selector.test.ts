import { describe, expect, it } from 'vitest';
import { formatSelector, isSelectorSyntaxError, matchesSelector, parseSelector, SelectorSyntaxError } from '../src/selector.js';

const web = { app: 'web', tier: 'frontend', 'app.kubernetes.io/name': 'shop', env: 'prod' };
const batch = { app: 'batch', env: 'dev' };
const bare = {};

describe('matchesSelector', () => {
  const cases: Array<[string, boolean, boolean, boolean]> = [
    // selector, web, batch, bare
    ['', true, true, true],
    ['   ', true, true, true],
    ['all()', true, true, true],
    ['app == "web"', true, false, false],
    ["app == 'web'", true, false, false],
    ['app=="web"', true, false, false],
    ['app != "web"', false, true, true],
    ['app in {"web", "batch"}', true, true, false],
    ['app in {}', false, false, false],
    ['app not in {"web"}', false, true, true],
    ['app not in {}', true, true, true],
    ['has(tier)', true, false, false],
    ['!has(tier)', false, true, true],
    ['has(app) && !has(tier)', false, true, false],
    ['app == "web" || env == "dev"', true, true, false],
    ['app == "web" && env == "dev" || app == "batch"', false, true, false],
    ['app == "web" && (env == "dev" || tier == "frontend")', true, false, false],
    ['!(app == "web")', false, true, true],
    ['!app == "web"', false, true, true],
    ['!!has(app)', true, true, false],
    ['app.kubernetes.io/name == "shop"', true, false, false],
    ['app contains "at"', false, true, false],
    ['app starts with "we"', true, false, false],
    ['app ends with "ch"', false, true, false],
    ['all() && app == "batch"', false, true, false],
    ['((app == "web"))', true, false, false],
    ['has(all)', false, false, false],
    ['in == "x"', false, false, false],
  ];
  for (const [text, onWeb, onBatch, onBare] of cases) {
    it(`${JSON.stringify(text)} → web ${onWeb}, batch ${onBatch}, no labels ${onBare}`, () => {
      const ast = parseSelector(text);
      expect(matchesSelector(ast, web)).toBe(onWeb);
      expect(matchesSelector(ast, batch)).toBe(onBatch);
      expect(matchesSelector(ast, bare)).toBe(onBare);
      // The canonical text parses back to the same meaning and is a fixed point.
      const canonical = formatSelector(ast);
      expect(formatSelector(parseSelector(canonical))).toBe(canonical);
      expect(matchesSelector(parseSelector(canonical), web)).toBe(onWeb);
      expect(matchesSelector(parseSelector(canonical), batch)).toBe(onBatch);
    });
  }

  it('does not treat inherited object properties as labels', () => {
    expect(matchesSelector(parseSelector('has(toString)'), {})).toBe(false);
    expect(matchesSelector(parseSelector('constructor != "x"'), {})).toBe(true);
  });
});

describe('formatSelector', () => {
  const cases: Array<[string, string]> = [
    ['', 'all()'],
    ["app=='web'", 'app == "web"'],
    ['app in {"b","a","b"}', 'app in {"a", "b"}'],
    ["name == 'say \"hi\"'", `name == 'say "hi"'`],
    ['a == "1" && (b == "2" && c == "3")', 'a == "1" && b == "2" && c == "3"'],
    ['(a == "1" || b == "2") && c == "3"', '(a == "1" || b == "2") && c == "3"'],
    ['a == "1" || b == "2" && c == "3"', 'a == "1" || b == "2" && c == "3"'],
    ['!a == "1"', '!(a == "1")'],
    ['! has( a )', '!has(a)'],
    ['x not   in {  }', 'x not in {}'],
  ];
  for (const [input, canonical] of cases) {
    it(`${JSON.stringify(input)} → ${JSON.stringify(canonical)}`, () => {
      expect(formatSelector(parseSelector(input))).toBe(canonical);
    });
  }

  it('builds a typed AST', () => {
    expect(parseSelector('app == "web" && !has(x) || t in {"a"}')).toEqual({
      kind: 'or',
      operands: [
        { kind: 'and', operands: [{ kind: 'equals', key: 'app', value: 'web' }, { kind: 'not', operand: { kind: 'has', key: 'x' } }] },
        { kind: 'in', key: 't', values: ['a'] },
      ],
    });
  });
});

describe('parseSelector errors', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['app = "web"', 5, /use "=="/],
    ['app == web', 8, /quoted string/],
    ['app == "web', 8, /unterminated/],
    ["app == 'web", 8, /unterminated/],
    ['app', 4, /operator after label key "app"/],
    ['app == "a" &&', 14, /label key/],
    ['app == "a" & b == "c"', 12, /use "&&"/],
    ['app == "a" | b == "c"', 12, /use "\|\|"/],
    ['app == "a" b == "c"', 12, /"&&", "\|\|" or end/],
    ['(app == "a"', 12, /"\)" to close the "\(" at column 1/],
    ['app == "a")', 11, /end of selector/],
    ['has(app', 8, /close "has\("/],
    ['has()', 5, /label key inside/],
    ['all(', 5, /after "all\("/],
    ['app in {"a" "b"}', 13, /"," or "}"/],
    ['app in {"a",}', 13, /quoted string in the set/],
    ['app in "a"', 8, /"\{"/],
    ['app not "a"', 5, /operator/],
    ['app == "a" && && b == "c"', 15, /label key/],
    ['!', 2, /label key/],
    ['app == "a" $', 12, /unexpected character "\$"/],
    ['()', 2, /label key/],
    ['-app == "x"', 1, /unexpected character "-"/],
  ];
  for (const [input, column, reason] of cases) {
    it(`${JSON.stringify(input)} fails at column ${column}`, () => {
      let caught: unknown;
      try {
        parseSelector(input);
      } catch (e) {
        caught = e;
      }
      expect(isSelectorSyntaxError(caught)).toBe(true);
      const error = caught as SelectorSyntaxError;
      expect(error.reason).toMatch(reason);
      expect(error.column).toBe(column);
    });
  }

  it('limits nesting instead of overflowing the stack', () => {
    expect(() => parseSelector('('.repeat(1000) + 'a == "b"' + ')'.repeat(1000))).toThrow(SelectorSyntaxError);
    expect(() => parseSelector('!'.repeat(1000) + 'has(a)')).toThrow(SelectorSyntaxError);
  });
});
