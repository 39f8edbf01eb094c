// A fast reader for the YAML people write for dnsplane: block mappings and lists, plain and
// quoted scalars, comments, several documents per file. The `yaml` package (which reports
// every error with its line, and which stays the reference) takes ~1 ms per small policy file
// on a cold start — 1 s for 1,000 policies; js-yaml reads the same text ~8× faster. Text is
// taken this way only when the two cannot differ, and only when js-yaml reads it without an
// error: everything else — errors included, so every message stays the `yaml` package's —
// goes the reference way. A differential test holds the two equal.
import jsyaml from 'js-yaml';

/**
 * YAML 1.2's core schema, exactly as the `yaml` package resolves it (js-yaml's CORE_SCHEMA
 * also reads 0b101, 1_000 and +0x1F as numbers and -.5 as a string; the reference does the
 * opposite). Scalars that match none of these stay strings.
 */
const NULL = /^(?:~|null|Null|NULL)?$/;
const BOOL = /^(?:true|True|TRUE|false|False|FALSE)$/;
const INT_DECIMAL = /^[-+]?[0-9]+$/;
const INT_OCTAL = /^0o[0-7]+$/;
const INT_HEX = /^0x[0-9a-fA-F]+$/;
const FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$/;
const FLOAT_INFINITY = /^[-+]?\.(?:inf|Inf|INF)$/;
const FLOAT_NAN = /^\.(?:nan|NaN|NAN)$/;

const coreNull = new jsyaml.Type('tag:yaml.org,2002:null', {
  kind: 'scalar',
  resolve: (text: string) => NULL.test(text),
  construct: () => null,
});
const coreBool = new jsyaml.Type('tag:yaml.org,2002:bool', {
  kind: 'scalar',
  resolve: (text: string) => BOOL.test(text),
  construct: (text: string) => text[0] === 't' || text[0] === 'T',
});
const coreInt = new jsyaml.Type('tag:yaml.org,2002:int', {
  kind: 'scalar',
  resolve: (text: string) => INT_DECIMAL.test(text) || INT_OCTAL.test(text) || INT_HEX.test(text),
  construct: (text: string) =>
    INT_OCTAL.test(text) ? parseInt(text.slice(2), 8) : INT_HEX.test(text) ? parseInt(text.slice(2), 16) : Number(text),
});
const coreFloat = new jsyaml.Type('tag:yaml.org,2002:float', {
  kind: 'scalar',
  resolve: (text: string) => FLOAT.test(text) || FLOAT_INFINITY.test(text) || FLOAT_NAN.test(text),
  construct: (text: string) =>
    FLOAT_NAN.test(text) ? Number.NaN : FLOAT_INFINITY.test(text) ? (text[0] === '-' ? -Infinity : Infinity) : Number(text),
});

const CORE_SCHEMA = jsyaml.FAILSAFE_SCHEMA.extend({ implicit: [coreNull, coreBool, coreInt, coreFloat] });

/**
 * Where js-yaml and the reference may part ways, or where the reference has checks of its own,
 * all at the start of a node (a line's first character, or after ":", "-", "[", "{", ","):
 * anchors, aliases and tags (the reference limits alias expansion and turns unknown tags into
 * errors), block scalars (chomping and indentation indicators), the reserved "@" and "`";
 * anywhere: merge keys, directives, explicit "?" keys, "__proto__", and a line longer than 1,000
 * characters (the reference limits implicit keys to 1,024). The same characters inside a scalar
 * (`app == "a" && !has(b)`) are plain text to both.
 */
const NOT_SIMPLE = /(?:^|[:\-[{,])[ ]*[&*!|>@`]|<<|__proto__|^%|(?:^|\s)\?(?:\s|$)/m;
const LONGEST_LINE = 1000;
/** A key that resolves to null (`null:`, `~:`, `: x`): the reference names it "", js-yaml "null". */
const NULL_KEY = /(?:^|[-{,])[ ]*(?:~|null|Null|NULL)?[ ]*:(?:[ ]|$)/m;
/** A flow collection as a key (`[a]: 1`): the reference names it "[ a ]", js-yaml "a". */
const COLLECTION_KEY = /[\]}][ ]*:(?:[ ]|$)/m;
/** Text without a node (blank lines and comments): no document for the reference, one null for js-yaml. */
const NO_NODE = /^(?:[ ]*(?:#[^\n]*)?\r?(?:\n|$))*$/;

/**
 * Only printable ASCII and line breaks: no tabs, no characters YAML treats apart (both fast
 * readers, this one and inputs.ts's plain JSON, take nothing else).
 */
export function isPrintableAsciiText(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if ((code < 0x20 && code !== 0x0a && code !== 0x0d) || code > 0x7e) return false;
  }
  return true;
}

/**
 * The documents of `text` (one value per document, null for an empty one) when it is simple
 * YAML that js-yaml reads without an error, else undefined: then the caller asks the reference.
 * Only printable ASCII and line breaks are taken (no tabs, no characters YAML treats apart).
 */
export function simpleYamlDocuments(text: string): unknown[] | undefined {
  if (!isPrintableAsciiText(text)) return undefined;
  for (let start = 0; start <= text.length; ) {
    const end = text.indexOf('\n', start);
    if ((end < 0 ? text.length : end) - start > LONGEST_LINE) return undefined;
    if (end < 0) break;
    start = end + 1;
  }
  if (NOT_SIMPLE.test(text) || NULL_KEY.test(text) || COLLECTION_KEY.test(text)) return undefined;
  if (NO_NODE.test(text)) return [];
  try {
    return jsyaml.loadAll(text, undefined, { schema: CORE_SCHEMA, json: false });
  } catch {
    return undefined;
  }
}
