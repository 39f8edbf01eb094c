// The fast YAML reader against the reference (the `yaml` package, which parseDocuments asks
// for everything else): whenever the fast reader answers, it must answer exactly what the
// reference reads — every fixture, the examples, a table of scalars where YAML schemas part
// ways, and random documents. Texts the reference reads otherwise (or rejects) must be left to it.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseDocuments } from '../src/inputs.js';
import { simpleYamlDocuments } from '../src/simple-yaml.js';
import { prng } from './prng.js';

/** The reference's documents, or undefined when it reports an error or a warning. */
function reference(text: string): unknown[] | undefined {
  const docs = parseAllDocuments(text, { uniqueKeys: true, merge: true });
  const list = Array.isArray(docs) ? docs : [];
  if (list.some((doc) => doc.errors.length > 0 || doc.warnings.length > 0)) return undefined;
  try {
    return list.map((doc) => doc.toJS({ maxAliasCount: 1000 }) as unknown);
  } catch {
    return undefined;
  }
}

/** Asserts the fast reader either declines or reads what the reference reads; returns whether it answered. */
function expectAgrees(text: string): boolean {
  const fast = simpleYamlDocuments(text);
  if (fast === undefined) return false;
  const expected = reference(text);
  expect(expected, `the reference rejects what the fast reader read:\n${text}`).toBeDefined();
  // Empty documents: null for the reference and for the fast reader alike.
  expect(fast.map((value) => (value === undefined ? null : value)), text).toEqual(expected);
  return true;
}

function filesUnder(folder: string): string[] {
  return readdirSync(folder).flatMap((name) => {
    const full = join(folder, name);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

const here = fileURLToPath(new URL('.', import.meta.url));

describe('simpleYamlDocuments: the fast reader agrees with the reference', () => {
  it('on every input fixture and the examples (and answers for the usual policy files)', () => {
    const files = [
      ...filesUnder(join(here, 'fixtures', 'inputs')),
      ...filesUnder(join(here, '..', '..', '..', 'examples')),
    ].filter((file) => /\.ya?ml$/.test(file));
    expect(files.length).toBeGreaterThan(100);
    let answered = 0;
    for (const file of files) if (expectAgrees(readFileSync(file, 'utf8'))) answered += 1;
    // Most fixtures are plain block YAML: the fast way must actually be taken.
    expect(answered).toBeGreaterThan(files.length / 2);
    for (const example of ['web-egress.yaml', 'batch-egress.yaml', 'endpoints.yaml']) {
      expect(simpleYamlDocuments(readFileSync(join(here, '..', '..', '..', 'examples', 'policies', example), 'utf8'))).toBeDefined();
    }
  });

  const scalars = [
    '0', '-0', '+0', '00', '007', '08', '0o17', '0o8', '0o', '0x1F', '0X1F', '0x', '0xG', '+0x1F', '0b101', '1_000',
    '1', '+1', '-1', '123456789012345678901234567890', '1.', '.5', '-.5', '+.5', '1.0e3', '1e3', '1E3', '1e+3', '1e-3',
    '1e', '12e03', '1.2.3', '+12.5e-3', '.', '.inf', '.Inf', '.INF', '-.inf', '+.inf', '.nan', '.NaN', '.NAN', 'nan',
    'Infinity', '~', 'null', 'Null', 'NULL', 'nULL', 'true', 'True', 'TRUE', 'tRUE', 'false', 'yes', 'no', 'on', 'off',
    'y', 'n', '2001-12-14', '2001-12-14t21:59:43.10-05:00', '12:30:45', '1:20', '"x"', "'y'", "'it''s'", '"a\\tb"',
    '"\\x41\\u0042"', '[]', '{}', '[1, two, "3"]', '{a: 1, b: [x]}', 'a b c', 'a # comment', 'a#b', "'#'", 'x:y', '-x',
    '--', '"8000:8080"', '8000:8080', '"app == \\"web\\" && !has(x)"', 'app == "web" && !has(x)', 'a || b',
  ];
  it('on scalars where YAML schemas part ways (numbers, booleans, nulls, timestamps)', () => {
    for (const scalar of scalars) {
      expectAgrees(`a: ${scalar}\n`);
      expectAgrees(`- ${scalar}\n- [${scalar}]\n`);
    }
  });

  it('on document markers, comments and empty documents (indices kept)', () => {
    const texts = [
      '', '\n', '# only a comment\n', '---\n', '---\n---\n', 'a: 1\n---\n', '---\na: 1\n', 'a: 1\n...\n', '---\n---\na: 1\n---\nb: 2\n',
      'a: 1\n---\n# nothing\n---\nb: 2\n', '--- a\n', '--- # c\na: 1\n', 'a:\n  - 1\n  -\n  - 3\n', 'a:\nb: ~\n', 'a: 1\r\nb: 2\r\n',
      'a: "multi\n  line"\n', 'a: plain\n  continued\n', "a: 'folded\n\n  para'\n", 'a: [1,\n  2]\n', '{a: 1}\n', '[a, b]\n',
      'a:\n  b:\n    c: 1\n  d: 2\n', '- - 1\n  - 2\n- 3\n', '"quoted key": 1\n', "'k': v\n", '1: a\n', 'null: a\n', 'true: a\n',
      '[a]: 1\n', '{a: 1}: 2\n', 'a: b: c\n', '- a: 1\n  b: 2\n', 'a:\n- 1\n- 2\n', '{a: 1, a: 2}\n', '[a, b]: c\n', 'a: [b, {c: d}]\n',
      'a: "x\\\n  y"\n', 'a: \'\'\n', 'a: ""\n', 'a: - b\n', 'a:\n  -\n    b: 1\n', 'a  :  1\n', '? \n', 'a: 1 #c\n#d\nb: 2\n',
    ];
    for (const text of texts) expectAgrees(text);
    // parseDocuments keeps the reference's document indices on the fast way.
    const parsed = parseDocuments('p.yaml', '---\n---\nkind: Policy\n---\nkind: Endpoint\n');
    expect(parsed.documents.map((d) => [d.document, d.value])).toEqual([
      [1, { kind: 'Policy' }],
      [2, { kind: 'Endpoint' }],
    ]);
    expect(parseDocuments('p.yaml', '# nothing\n').problems.map((p) => p.reason)).toEqual(['file is empty: it holds no document']);
  });

  it('leaves to the reference what it reads otherwise or rejects (so its messages stay)', () => {
    const declined = [
      'a: &x 1\nb: *x\n', // anchor and alias
      'a: !has(x)\n', // a tag
      'a: !!str 1\n',
      'a: |\n  text\n', // block scalars
      'a: >-\n  text\n',
      'a: {<<: {b: 1}}\n', // a merge key
      '%YAML 1.2\n---\na: 1\n', // a directive
      '? a\n: 1\n', // an explicit key
      'a: @x\n', // reserved indicators
      'a: `x`\n',
      '__proto__: 1\n',
      'a:\t1\n', // a tab
      'name: café\n', // not ASCII
      `${'k'.repeat(1100)}: 1\n`, // longer than the reference's implicit-key limit
      '- *.example.test\n', // an unquoted wildcard is an alias to YAML
    ];
    for (const text of declined) expect(simpleYamlDocuments(text), text).toBeUndefined();
    // Errors the fast reader notices fall back too, and the reference words them.
    for (const text of ['a: 1\na: 2\n', 'a: [1, 2\n', 'a: "open\n', 'a:\n  - 1\n b: 2\n']) {
      expect(simpleYamlDocuments(text), text).toBeUndefined();
      expect(parseDocuments('p.yaml', text).problems[0]?.reason).toMatch(/^YAML (syntax )?error: /);
    }
  });

  it('on 3,000 random block and flow documents', () => {
    const random = prng(20261202);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    const words = ['a', 'b', 'kind', 'spec', 'ports', 'app', 'x-y', 'a.b', 'a/b', '"q k"', "'s k'", '1', 'null', '~', 'on', 'true', '1e3', '-0', '.nan', '0x1F', '"null"'];
    const value = (depth: number, indent: string): string => {
      const roll = random();
      if (depth > 2 || roll < 0.5) return ` ${pick(scalars)}`;
      if (roll < 0.7) return ` [${Array.from({ length: Math.floor(random() * 3) }, () => pick(scalars)).join(', ')}]`;
      if (roll < 0.85) {
        const inner = `${indent}  `;
        return `\n${Array.from({ length: 1 + Math.floor(random() * 3) }, () => `${inner}-${value(depth + 1, `${inner}  `)}`).join('\n')}`;
      }
      return `\n${mapping(depth + 1, `${indent}  `)}`;
    };
    const mapping = (depth: number, indent: string): string => {
      const keys = [...new Set(Array.from({ length: 1 + Math.floor(random() * 4) }, () => pick(words)))];
      return keys.map((key) => `${indent}${key}:${value(depth, indent)}${random() < 0.1 ? ' # note' : ''}`).join('\n');
    };
    let answered = 0;
    for (let i = 0; i < 3000; i += 1) {
      const documents = Array.from({ length: 1 + Math.floor(random() * 2) }, () => mapping(0, ''));
      if (expectAgrees(`${documents.join('\n---\n')}\n`)) answered += 1;
    }
    expect(answered).toBeGreaterThan(1000);
  });
});
