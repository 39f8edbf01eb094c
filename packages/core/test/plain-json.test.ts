// parseDocuments reads plain JSON text with JSON.parse (fast) when the YAML parser would read
// the same value: these cases hold the two ways equal, and send every text where they could
// differ (repeated keys, merges, tabs, non-ASCII, keys on their own line) the YAML way.
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseDocuments } from '../src/inputs.js';

/** What the YAML parser alone makes of the text (the slow path's values). */
function viaYaml(text: string): unknown[] {
  return parseAllDocuments(text, { uniqueKeys: true, merge: true }).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS();
  });
}

const policy = {
  kind: 'Policy',
  metadata: { name: 'p1', labels: { 'a/b': 'x:y', '': '"quoted" \\ back' } },
  spec: {
    order: 1.5,
    selector: 'app == "web" && !has(x)',
    types: ['Egress'],
    egress: [{ action: 'Allow', protocol: 'TCP', destination: { domains: ['*.example.test', '**.x.test'], ports: [443, '8000:8080'] } }],
    numbers: [0, -1, 1e21, 12345678901234567890, 0.000001, 2.5e-7, -0.5],
    flags: [true, false, null, {}, [], [[{}]]],
    text: 'line\nbreak\ttab \u0001 # not a comment, &anchor *alias !tag',
  },
};

describe('parseDocuments: plain JSON text', () => {
  const texts: Record<string, string> = {
    compact: JSON.stringify(policy),
    'indented 2': JSON.stringify(policy, null, 2),
    'indented 4, CRLF': JSON.stringify(policy, null, 4).replace(/\n/g, '\r\n'),
    'spaces around colons': JSON.stringify(policy, null, 1).replace(/":/g, '" : '),
    'leading blank lines': `\n\n  ${JSON.stringify(policy)}\n`,
    'a list': JSON.stringify([policy, { kind: 'Endpoint' }], null, 2),
    'an empty mapping': '{}',
  };
  for (const [name, text] of Object.entries(texts)) {
    it(`reads ${name} as the YAML parser does`, () => {
      const parsed = parseDocuments('p.yaml', text);
      expect(parsed.problems).toEqual([]);
      expect(parsed.documents.map((d) => d.value)).toEqual(viaYaml(text));
      expect(parsed.documents.map((d) => d.document)).toEqual([0]);
    });
  }

  it('spreads a .json list into one document per element, as before', () => {
    const parsed = parseDocuments('p.json', JSON.stringify([policy, { kind: 'Endpoint' }]));
    expect(parsed.documents.map((d) => [d.document, d.value])).toEqual([
      [0, policy],
      [1, { kind: 'Endpoint' }],
    ]);
    expect(parseDocuments('p.json', '[]').problems.map((p) => p.reason)).toEqual(['file is empty: it holds no document']);
  });

  it('leaves repeated keys to the YAML parser, which reports them', () => {
    for (const text of ['{"kind": "Policy", "kind": "Endpoint"}', '{"a": {"b": 1, "b": 2}}', '[{"x": 1}, {"y": 1, "y": 1}]']) {
      const parsed = parseDocuments('p.yaml', text);
      expect(parsed.documents).toEqual([]);
      expect(parsed.problems).toHaveLength(1);
      expect(parsed.problems[0]?.reason).toMatch(/^YAML syntax error: Map keys must be unique/);
    }
  });

  it('leaves text the YAML parser could read otherwise to it (same values, or its error)', () => {
    const cases = [
      '{"<<": {"a": 1}, "b": 2}', // a merge key
      '{"__proto__": {"a": 1}}',
      '{"a":\t1}', // a tab
      '{"name": "café"}', // non-ASCII
      '{"a"\n: 1}', // a key whose colon is on the next line
      `{"${'k'.repeat(1100)}": 1}`, // longer than YAML's implicit-key limit
    ];
    for (const text of cases) {
      const parsed = parseDocuments('p.yaml', text);
      const yaml = parseAllDocuments(text, { uniqueKeys: true, merge: true });
      if (yaml.some((doc) => doc.errors.length > 0 || doc.warnings.length > 0)) {
        expect(parsed.documents).toEqual([]);
        expect(parsed.problems.length).toBeGreaterThan(0);
      } else {
        expect(parsed.problems).toEqual([]);
        expect(parsed.documents.map((d) => d.value)).toEqual(yaml.map((doc) => doc.toJS()));
      }
    }
  });

  it('still reports JSON syntax errors of .json files with their line and column', () => {
    const parsed = parseDocuments('p.json', '{\n  "a": 1,\n}');
    expect(parsed.problems.map((p) => p.reason)).toEqual([expect.stringMatching(/^JSON syntax error: .* at line 3, column 1$/)]);
  });
});
