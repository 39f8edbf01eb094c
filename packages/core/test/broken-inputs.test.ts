// Every broken input must fail with file, document index, field path and reason, and only
// with the problems it is expected to have. Each fixture states its expected problems in
// "# expect: <#doc|-> <field|(document)> :: <reason fragment> [@column]" lines (for JSON, in
// a sibling <file>.expect).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatProblem, InvalidInputError, isInvalidInput, type InputProblem } from '../src/errors.js';
import { checkDocuments, loadInputs, parseDocuments } from '../src/inputs.js';
import { prng } from './prng.js';

const fixtures = fileURLToPath(new URL('./fixtures/inputs/broken/', import.meta.url));

interface Expectation {
  readonly document: number | undefined;
  readonly field: string;
  readonly reason: string;
  readonly column: number | undefined;
}

const EXPECT = /^# expect: (#\d+|-) (\S+) :: (.*?)(?: @(\d+))?$/;

function expectations(file: string): Expectation[] {
  const source = existsSync(`${file}.expect`) ? `${file}.expect` : file;
  const found: Expectation[] = [];
  for (const line of readFileSync(source, 'utf8').split('\n')) {
    if (!line.startsWith('# expect:')) continue;
    const match = EXPECT.exec(line);
    if (!match) throw new Error(`bad expectation line in ${source}: ${line}`);
    found.push({
      document: match[1] === '-' ? undefined : Number(match[1]?.slice(1)),
      field: match[2] === '(document)' ? '' : (match[2] as string),
      reason: match[3] as string,
      column: match[4] === undefined ? undefined : Number(match[4]),
    });
  }
  if (found.length === 0) throw new Error(`${source} states no expectation`);
  return found;
}

function assertProblems(problems: readonly InputProblem[], expected: readonly Expectation[], file?: string): void {
  const lines = problems.map(formatProblem);
  for (const p of problems) {
    if (file !== undefined) expect(p.file).toBe(file);
    expect(p.reason.length).toBeGreaterThan(0);
    expect(formatProblem(p)).not.toContain('\n');
  }
  const unmatched = [...problems];
  for (const e of expected) {
    const index = unmatched.findIndex(
      (p) => p.document === e.document && p.field === e.field && p.reason.includes(e.reason) && p.column === e.column,
    );
    expect(index, `expected problem ${JSON.stringify(e)} among:\n${lines.join('\n')}`).toBeGreaterThanOrEqual(0);
    unmatched.splice(index, 1);
  }
  expect(unmatched.map(formatProblem), 'problems nobody expected').toEqual([]);
}

const resourceCases = readdirSync(path.join(fixtures, 'resources'))
  .filter((name) => !name.endsWith('.expect'))
  .sort();

describe('broken resource documents', () => {
  it('has enough cases', () => {
    expect(resourceCases.length).toBeGreaterThanOrEqual(60);
  });

  for (const name of resourceCases) {
    it(name, () => {
      const file = path.join(fixtures, 'resources', name);
      const parsed = parseDocuments(name, readFileSync(file, 'utf8'));
      const checked = checkDocuments(parsed.documents);
      assertProblems([...parsed.problems, ...checked.problems], expectations(file), name);
    });
  }
});

const configCases = readdirSync(path.join(fixtures, 'config'))
  .filter((name) => !name.endsWith('.expect'))
  .sort();

describe('broken config files (through loadInputs)', () => {
  for (const name of configCases) {
    it(name, async () => {
      const file = path.join(fixtures, 'config', name);
      let caught: unknown;
      try {
        await loadInputs(file);
      } catch (error) {
        caught = error;
      }
      expect(isInvalidInput(caught), String(caught)).toBe(true);
      const problems = (caught as InvalidInputError).problems;
      for (const p of problems) expect(p.file.endsWith(name)).toBe(true);
      assertProblems(problems, expectations(file));
    });
  }
});

describe('mutated valid documents never crash the validator', () => {
  const valid = fileURLToPath(new URL('./fixtures/inputs/valid/policies/', import.meta.url));
  const base = ['web.yaml', 'endpoints.yaml', 'team-b/defaults.yml'].flatMap(
    (name) => parseDocuments(name, readFileSync(path.join(valid, name), 'utf8')).documents,
  );
  const oddValues: unknown[] = [
    null, 0, -1, 1.5, 65536, 256, '', ' ', 'x', '*', '!', '{', '0:0', '198.18.0.0/99', 'fd00::/8', true, [], {}, [null], { a: 1 },
    'app ==', "app == 'x", 'a'.repeat(300), 'Allow', 'TCP', 'Ingress', ['Egress', 'Ingress'], Number.NaN, Infinity,
  ];

  it('reports problems (never throws) for 3000 random mutations', () => {
    const random = prng(20261125);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    let rejected = 0;
    for (let round = 0; round < 3000; round++) {
      const document = structuredClone(pick(base));
      // Walk to a random node and change it.
      let parent: Record<string, unknown> | unknown[] = document as unknown as Record<string, unknown>;
      let key: string | number = 'value';
      const holder: Record<string, unknown> = { value: document.value };
      parent = holder;
      for (let depth = 0; depth < 8; depth++) {
        const current: unknown = (parent as Record<string | number, unknown>)[key];
        if (current === null || typeof current !== 'object' || random() < 0.25) break;
        const keys: Array<string | number> = Array.isArray(current) ? current.map((_, i) => i) : Object.keys(current);
        if (keys.length === 0) break;
        parent = current as Record<string, unknown>;
        key = pick(keys);
      }
      const roll = random();
      const target = parent as Record<string | number, unknown>;
      if (roll < 0.6) target[key] = pick(oddValues);
      else if (roll < 0.8 && !Array.isArray(parent)) delete target[key];
      else if (!Array.isArray(parent)) target[`extra${round % 7}`] = pick(oddValues);
      else target[key] = pick(oddValues);
      const mutated = { ...document, value: holder['value'] };
      let problems: InputProblem[] = [];
      expect(() => {
        problems = checkDocuments([mutated]).problems;
      }, `round ${round}: ${JSON.stringify(mutated.value)}`).not.toThrow();
      if (problems.length > 0) rejected++;
      for (const p of problems) {
        expect(typeof p.field).toBe('string');
        expect(p.reason.length).toBeGreaterThan(0);
        expect(formatProblem(p)).not.toContain('\n');
      }
    }
    // The mutations really do break documents (most of them).
    expect(rejected).toBeGreaterThan(1500);
  });
});
