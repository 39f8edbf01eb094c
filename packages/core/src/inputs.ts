// Loading and validating everything the user wrote: the config file and the Policy/Endpoint
// documents it points at. Every problem is collected (file, document index, field path,
// reason, and the column for selectors) and reported together in one InvalidInputError, so
// one run shows everything to fix and nothing is half-applied.
import { readFileSync } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DnsplaneConfigSchema, type DnsplaneConfig } from './config.js';
import { InvalidInputError, type InputProblem } from './errors.js';
import { describeValue, issuesToProblems, suggestField } from './input-issues.js';
import { EndpointSchema, PolicySchema, RESOURCE_KINDS, type EndpointResource, type PolicyResource } from './resources.js';
import { isPrintableAsciiText, simpleYamlDocuments } from './simple-yaml.js';

/** One parsed YAML/JSON document and where it came from. */
export interface InputDocument {
  readonly file: string;
  /** 0-based position of the document in its file. */
  readonly document: number;
  readonly value: unknown;
}

export interface ValidatedResources {
  readonly policies: PolicyResource[];
  readonly endpoints: EndpointResource[];
}

export interface LoadedInputs {
  /** Absolute path of the config file. */
  readonly configFile: string;
  /** The config, defaults filled in; statePath is absolute (relative paths are taken from the config's folder). */
  readonly config: DnsplaneConfig;
  readonly policies: PolicyResource[];
  readonly endpoints: EndpointResource[];
  /** Absolute paths of every resource file read, in load order (for watching). */
  readonly files: string[];
}

/** File extensions picked up when a resource path is a folder. */
export const RESOURCE_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

/** Largest number of YAML aliases expanded in one document (guards against "billion laughs"). */
const MAX_ALIAS_COUNT = 1000;

const problem = (file: string, document: number | undefined, field: string, reason: string): InputProblem => ({
  file,
  ...(document === undefined ? {} : { document }),
  field,
  reason,
});

/**
 * Splits YAML (or JSON, which is YAML) text into documents. Empty documents (a stray `---`)
 * are skipped but keep their index; a file with no document at all is a problem. A JSON
 * file (by name) whose top level is a list holds one document per element.
 */
export function parseDocuments(
  file: string,
  text: string,
  options: { readonly jsonLists?: boolean } = {},
): { documents: InputDocument[]; problems: InputProblem[] } {
  const documents: InputDocument[] = [];
  const problems: InputProblem[] = [];
  if (text.startsWith('\uFEFF')) text = text.slice(1); // a byte-order mark is not content
  const isJsonFile = file.toLowerCase().endsWith('.json');
  // Text that is plain JSON (what tools write) reads as the same value through JSON.parse as
  // through the YAML parser, at a hundredth of the cost; anything else, errors included, goes
  // the YAML way below (so every message stays the YAML parser's).
  const json = plainJsonValue(text);
  if (json !== NOT_PLAIN_JSON) {
    // A .json file whose top level is a list holds one document per element.
    return readDocuments(file, Array.isArray(json) && options.jsonLists !== false && isJsonFile ? json : [json]);
  }
  if (isJsonFile) {
    const jsonProblem = jsonSyntaxProblem(text);
    if (jsonProblem !== undefined) return { documents, problems: [problem(file, undefined, '', jsonProblem)] };
  }
  if (!isJsonFile) {
    // Simple YAML (what people write) through the fast reader, when it reads the same values.
    const simple = simpleYamlDocuments(text);
    if (simple !== undefined) return readDocuments(file, simple);
  }
  let parsed: ReturnType<typeof parseAllDocuments>;
  try {
    parsed = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true, merge: true });
  } catch (error) {
    // e.g. nesting so deep that the parser runs out of stack
    const message = error instanceof Error ? error.message : String(error);
    return { documents, problems: [problem(file, undefined, '', `cannot parse the file: ${message}`)] };
  }
  const list = Array.isArray(parsed) ? parsed : [];
  list.forEach((doc, index) => {
    const error = doc.errors[0];
    if (error !== undefined) {
      // Later errors in the same document are usually consequences of the first one.
      const firstLine = (error.message.split('\n')[0] ?? error.message).replace(/:$/, '');
      problems.push(problem(file, index, '', `YAML syntax error: ${firstLine}`));
      return;
    }
    // Warnings are errors here: an unknown tag such as `!has(app)` (an unquoted selector)
    // would otherwise silently become an empty string, and an empty selector selects everything.
    const warning = doc.warnings[0];
    if (warning !== undefined) {
      const firstLine = (warning.message.split('\n')[0] ?? warning.message).replace(/:$/, '');
      const tag = /^Unresolved tag: (\S+) (at line \d+, column \d+)/.exec(firstLine);
      problems.push(
        problem(
          file,
          index,
          '',
          tag
            ? `YAML error: ${tag[1]} ${tag[2]} is read as a YAML tag: quote values that start with "!" ('${tag[1]} …')`
            : `YAML error: ${firstLine}`,
        ),
      );
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const alias = /^Unresolved alias.*: (.*)$/.exec(message);
      if (alias) {
        const escaped = (alias[1] ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const found = new RegExp(`(^|[\\s\\[{,:-])\\*${escaped}`, 'm').exec(text);
        const offset = found === null ? -1 : found.index + (found[1]?.length ?? 0);
        const line = offset < 0 ? '' : ` at line ${text.slice(0, offset).split('\n').length}`;
        problems.push(
          problem(file, index, '', `YAML error${line}: "*${alias[1]}" is read as an alias: quote values that start with "*" ("*${alias[1]}")`),
        );
      } else {
        problems.push(problem(file, index, '', `YAML error: ${message}`));
      }
      return;
    }
    if (value === null || value === undefined) return;
    if (Array.isArray(value) && options.jsonLists !== false && file.toLowerCase().endsWith('.json') && list.length === 1) {
      value.forEach((element, position) => documents.push({ file, document: position, value: element }));
      return;
    }
    documents.push({ file, document: index, value });
  });
  if (documents.length === 0 && problems.length === 0) {
    problems.push(problem(file, undefined, '', 'file is empty: it holds no document'));
  }
  return { documents, problems };
}

/** The documents a fast reader read: empty ones (null) skipped with their index kept. */
function readDocuments(file: string, values: readonly unknown[]): { documents: InputDocument[]; problems: InputProblem[] } {
  const documents: InputDocument[] = [];
  values.forEach((value, index) => {
    if (value !== null && value !== undefined) documents.push({ file, document: index, value });
  });
  const problems = documents.length === 0 ? [problem(file, undefined, '', 'file is empty: it holds no document')] : [];
  return { documents, problems };
}

const NOT_PLAIN_JSON: unique symbol = Symbol('not plain JSON');

/**
 * The value of `text` when it is one JSON object or array that the YAML parser would read as
 * exactly the same value, else NOT_PLAIN_JSON. Taken only when nothing can differ: printable
 * ASCII and line breaks (no tabs, no other characters YAML treats apart), no key repeated in
 * an object (YAML reports it; JSON.parse keeps the last), no "<<" (a YAML merge) or
 * "__proto__" key, every key on one line with its colon and shorter than YAML's 1,024-character
 * limit for implicit keys.
 */
function plainJsonValue(text: string): unknown {
  let start = 0;
  while (start < text.length && (text[start] === ' ' || text[start] === '\n' || text[start] === '\r')) start++;
  const first = text[start];
  if (first !== '{' && first !== '[') return NOT_PLAIN_JSON;
  if (!isPrintableAsciiText(text)) return NOT_PLAIN_JSON;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return NOT_PLAIN_JSON;
  }
  // Keys as written (a string followed by ":") against keys kept: equal only without repeats.
  let written = 0;
  for (let i = start; i < text.length; i++) {
    if (text[i] !== '"') continue;
    const open = i;
    for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
    let j = i + 1;
    while (text[j] === ' ') j++;
    if (text[j] === '\n' || text[j] === '\r') {
      while (text[j] === ' ' || text[j] === '\n' || text[j] === '\r') j++;
      if (text[j] === ':') return NOT_PLAIN_JSON; // a key on its own line: not a YAML implicit key
      continue;
    }
    if (text[j] !== ':') continue;
    if (i - open > 1000) return NOT_PLAIN_JSON;
    written++;
  }
  let kept = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (Array.isArray(item)) {
      for (const element of item) if (typeof element === 'object' && element !== null) pending.push(element);
    } else if (typeof item === 'object' && item !== null) {
      for (const key of Object.keys(item)) {
        if (key === '<<' || key === '__proto__') return NOT_PLAIN_JSON;
        kept++;
        const member = (item as Record<string, unknown>)[key];
        if (typeof member === 'object' && member !== null) pending.push(member);
      }
    }
  }
  return written === kept ? value : NOT_PLAIN_JSON;
}

/** JSON.parse's complaint with a line and column, or undefined when the text is valid JSON. */
function jsonSyntaxProblem(text: string): string | undefined {
  try {
    JSON.parse(text);
    return undefined;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const position = /at position (\d+)/.exec(message);
    if (position === null) return `JSON syntax error: ${message.replace(/, "[\s\S]*$/, '').split('\n')[0] ?? ''}`;
    const before = text.slice(0, Number(position[1]));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    return `JSON syntax error: ${message.replace(/ in JSON at position \d+.*$/, '')} at line ${line}, column ${column}`;
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates the config value (one parsed document) against the schema. */
export function validateConfig(file: string, value: unknown): { config?: DnsplaneConfig; problems: InputProblem[] } {
  if (!isMapping(value)) {
    return { problems: [problem(file, undefined, '', `the config must be a mapping of settings, got ${describeValue(value)}`)] };
  }
  if (typeof value['kind'] === 'string') {
    return {
      problems: [
        problem(
          file,
          undefined,
          'kind',
          `this is a ${value['kind']} document, not a config file: pass the config file and list resource files under "resources"`,
        ),
      ],
    };
  }
  const result = DnsplaneConfigSchema.safeParse(value, { reportInput: true });
  if (result.success) return { config: result.data, problems: [] };
  return { problems: issuesToProblems(result.error.issues, { file }) };
}

interface Origin {
  readonly file: string;
  readonly document: number;
}

const where = (origin: Origin): string => `${origin.file}#${origin.document}`;

/** Validates resource documents; returns the resources and every problem found. */
export function checkDocuments(documents: readonly InputDocument[]): ValidatedResources & { problems: InputProblem[] } {
  const problems: InputProblem[] = [];
  const policies: PolicyResource[] = [];
  const endpoints: EndpointResource[] = [];
  const names = new Map<string, Origin>();
  const interfaces = new Map<string, Origin>();
  let hostEndpoint: Origin | undefined;

  for (const doc of documents) {
    const at = (field: string, reason: string) => problems.push(problem(doc.file, doc.document, field, reason));
    const { value } = doc;
    if (!isMapping(value)) {
      at('', `a document must be a mapping with kind, metadata and spec, got ${describeValue(value)}`);
      continue;
    }
    const kind = value['kind'];
    if (kind === undefined) {
      at('kind', `required field is missing: say which resource this is (${RESOURCE_KINDS.join(' or ')})`);
      continue;
    }
    if (typeof kind !== 'string') {
      at('kind', `kind must be a string naming the resource (${RESOURCE_KINDS.join(' or ')}), got ${describeValue(kind)}`);
      continue;
    }
    if (kind !== 'Policy' && kind !== 'Endpoint') {
      // Calico/Kubernetes kinds (GlobalNetworkPolicy, HostEndpoint, …) point at ours.
      const lower = kind.toLowerCase();
      const suggestion = lower.endsWith('policy')
        ? 'Policy'
        : lower.endsWith('endpoint')
          ? 'Endpoint'
          : suggestField(kind, RESOURCE_KINDS);
      const hint = suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`;
      at('kind', `unknown kind ${JSON.stringify(kind)}${hint}: expected ${RESOURCE_KINDS.join(' or ')}`);
      continue;
    }

    // Duplicates are checked on the raw name so they are reported even when other fields fail.
    const metadata = value['metadata'];
    const name = isMapping(metadata) && typeof metadata['name'] === 'string' ? metadata['name'] : undefined;
    if (name !== undefined) {
      const key = `${kind}\u0000${name}`;
      const first = names.get(key);
      if (first) at('metadata.name', `duplicate ${kind} name "${name}": already defined in ${where(first)}`);
      else names.set(key, doc);
    }

    if (kind === 'Policy') {
      const result = validatedOnce(value, 'Policy', () => PolicySchema.safeParse(value, { reportInput: true }));
      if (result.success) policies.push(result.data);
      else problems.push(...issuesToProblems(result.error.issues, doc));
      continue;
    }
    const result = validatedOnce(value, 'Endpoint', () => EndpointSchema.safeParse(value, { reportInput: true }));
    if (!result.success) {
      problems.push(...issuesToProblems(result.error.issues, doc));
      continue;
    }
    const endpoint = result.data;
    endpoints.push(endpoint);
    if (endpoint.spec.interface !== undefined) {
      const first = interfaces.get(endpoint.spec.interface);
      if (first) at('spec.interface', `interface "${endpoint.spec.interface}" already belongs to the endpoint in ${where(first)}`);
      else interfaces.set(endpoint.spec.interface, doc);
    }
    if (endpoint.spec.host) {
      if (hostEndpoint) at('spec.host', `only one endpoint can be the host; another one is in ${where(hostEndpoint)}`);
      else hostEndpoint = doc;
    }
  }
  return { policies, endpoints, problems };
}

/**
 * The schema's verdict on a document value, computed once per value object: values of files
 * that did not change are the same objects on the next load (parsedFiles), so a re-apply
 * validates only what changed. Results are never mutated by their users.
 */
function validatedOnce<T>(value: object, kind: 'Policy' | 'Endpoint', validate: () => T): T {
  const cached = validated.get(value);
  if (cached !== undefined && cached.kind === kind) return cached.result as T;
  const result = validate();
  validated.set(value, { kind, result });
  return result;
}

/** Validates resource documents without the file system; throws InvalidInputError listing every problem. */
export function validateDocuments(documents: readonly InputDocument[]): ValidatedResources {
  const { policies, endpoints, problems } = checkDocuments(documents);
  if (problems.length > 0) throw new InvalidInputError(problems);
  return { policies, endpoints };
}

/** Problems that need both the config and the resources. */
export function crossCheck(configFile: string, config: DnsplaneConfig, policies: readonly PolicyResource[]): InputProblem[] {
  const usesDomains = policies.some((policy) => policy.spec.egress.some((rule) => rule.destination.domains !== undefined));
  if (usesDomains && config.dns.trustedServers.length === 0) {
    return [
      problem(
        configFile,
        undefined,
        'dns.trustedServers',
        'policies use domains but no trusted DNS server is configured: no address could ever be learned',
      ),
    ];
  }
  return [];
}

/**
 * Path as shown in messages: relative to the working folder when inside it. `cwd`: the working
 * folder, when the caller already read it (one process.cwd() per load, not per file).
 */
function displayPath(absolute: string, cwd = process.cwd()): string {
  // A normalised absolute path below the working folder: its rest (path.relative costs ~0.1 ms a call).
  if (absolute.startsWith(cwd) && absolute[cwd.length] === '/' && cwd !== '/' && path.normalize(absolute) === absolute) {
    const rest = absolute.slice(cwd.length + 1);
    if (rest !== '' && !rest.startsWith('/')) return rest;
  }
  const relative = path.relative(cwd, absolute);
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : absolute;
}

function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

/**
 * Resource files under a folder: *.yaml, *.yml, *.json, recursively, sorted; dot-entries
 * skipped; a folder reached again through a symlink (a loop) is not entered twice.
 */
async function filesUnder(folder: string, visited = new Set<string>()): Promise<Array<{ file: string; real?: string }>> {
  const real = await realpath(folder);
  if (visited.has(real)) return [];
  visited.add(real);
  const entries = await readdir(folder, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const files: Array<{ file: string; real?: string }> = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(folder, entry.name);
    let isFolder = entry.isDirectory();
    let isFile = entry.isFile();
    const link = entry.isSymbolicLink();
    if (link) {
      const target = await stat(full).catch(() => undefined);
      isFolder = target?.isDirectory() ?? false;
      isFile = target?.isFile() ?? false;
    }
    if (isFolder) files.push(...(await filesUnder(full, visited)));
    else if (isFile && RESOURCE_EXTENSIONS.some((ext) => entry.name.toLowerCase().endsWith(ext))) {
      // A plain file's real path is its name in the folder's real path (no realpath call per
      // file: 1,000 of them cost more than the reads); a symlink's is resolved when checked.
      files.push(link ? { file: full } : { file: full, real: path.join(real, entry.name) });
    }
  }
  return files;
}

/** Files read between two turns of the event loop. */
const READ_BATCH = 64;

/**
 * Reads every file; each result is the text or the error. Resource files are small: a
 * synchronous read is ~20 µs, the promise API's open/stat/read/close on the thread pool ~0.1 ms
 * (1,000 files: ~25 ms against 100–200 ms). The event loop gets a turn after every READ_BATCH
 * files, so the status API keeps answering.
 */
async function readAll(files: readonly string[]): Promise<Array<{ text: string } | { error: unknown }>> {
  const out: Array<{ text: string } | { error: unknown }> = new Array(files.length);
  for (let index = 0; index < files.length; index++) {
    if (index > 0 && index % READ_BATCH === 0) await new Promise((resolve) => setImmediate(resolve));
    try {
      out[index] = { text: readFileSync(files[index]!, 'utf8') };
    } catch (error) {
      out[index] = { error };
    }
  }
  return out;
}

/**
 * The last parse of each resource file, by path: a file whose text is unchanged is not parsed
 * again (a re-apply after one edited file among 1,000 parses one). The documents' values are
 * reused as they are, so their validation is cached too (validated, below).
 */
const parsedFiles = new Map<string, { readonly text: string; readonly parsed: ReturnType<typeof parseDocuments> }>();
const validated = new WeakMap<object, { readonly kind: 'Policy' | 'Endpoint'; readonly result: unknown }>();

/**
 * Reads and validates the config file alone (not the resources it names), defaults filled in
 * and statePath absolute as in loadInputs: for work that can start before the resources are
 * read. Throws InvalidInputError with the config's problems.
 */
export async function loadConfig(configPath: string): Promise<{ configFile: string; config: DnsplaneConfig }> {
  const configFile = path.resolve(configPath);
  const shown = displayPath(configFile);
  let text: string;
  try {
    text = await readFile(configFile, 'utf8');
  } catch (error) {
    throw new InvalidInputError([problem(shown, undefined, '', `cannot read the config file: ${error instanceof Error ? error.message : String(error)}`)]);
  }
  const parsed = parseDocuments(shown, text, { jsonLists: false });
  if (parsed.problems.length > 0) throw new InvalidInputError(parsed.problems);
  if (parsed.documents.length !== 1) throw new InvalidInputError([problem(shown, undefined, '', `the config file must hold one document, found ${parsed.documents.length}`)]);
  const { config, problems } = validateConfig(shown, parsed.documents[0]?.value);
  if (config === undefined || problems.length > 0) throw new InvalidInputError(problems);
  return { configFile, config: { ...config, statePath: path.resolve(path.dirname(configFile), config.statePath) } };
}

/**
 * Reads the config file and every resource it names, validates all of it and returns the typed
 * result. Throws InvalidInputError with every problem found (nothing is partially returned).
 * `resources` entries are files or folders relative to the config file's folder; folders are
 * read recursively (sorted, *.yaml/*.yml/*.json, names starting with "." skipped); a file named
 * explicitly is read whatever its extension; a file reached twice is read once.
 */
export async function loadInputs(configPath: string): Promise<LoadedInputs> {
  const configFile = path.resolve(configPath);
  const shownConfig = displayPath(configFile);
  const problems: InputProblem[] = [];
  const fail = (): never => {
    throw new InvalidInputError(problems);
  };

  let configText: string;
  try {
    configText = await readFile(configFile, 'utf8');
  } catch (error) {
    const code = errorCode(error);
    const reason =
      code === 'ENOENT'
        ? `config file not found (looked for ${configFile})`
        : code === 'EISDIR'
          ? 'is a folder: expected the config file'
          : `cannot read the config file: ${error instanceof Error ? error.message : String(error)}`;
    problems.push(problem(shownConfig, undefined, '', reason));
    return fail();
  }

  const parsedConfig = parseDocuments(shownConfig, configText, { jsonLists: false });
  if (parsedConfig.problems.length > 0) {
    problems.push(...parsedConfig.problems.map(({ document: _document, ...rest }) => rest));
    return fail();
  }
  if (parsedConfig.documents.length > 1) {
    problems.push(problem(shownConfig, undefined, '', `the config file must hold one document, found ${parsedConfig.documents.length}`));
    return fail();
  }
  const configValue = parsedConfig.documents[0]?.value;
  const { config, problems: configProblems } = validateConfig(shownConfig, configValue);
  problems.push(...configProblems);

  // Resource paths: from the valid config, or best effort from the raw value so that resource
  // problems are reported in the same run as config problems.
  let resourcePaths: readonly unknown[] = [];
  if (config) resourcePaths = config.resources;
  else if (isMapping(configValue) && Array.isArray(configValue['resources'])) resourcePaths = configValue['resources'];

  const configFolder = path.dirname(configFile);
  const files: string[] = [];
  // The config file itself is never a resource, even in a folder listed in `resources`.
  const seen = new Set<string>([await realpath(configFile).catch(() => configFile)]);
  for (const [index, entry] of resourcePaths.entries()) {
    if (typeof entry !== 'string' || entry === '') continue;
    const target = path.resolve(configFolder, entry);
    let info;
    try {
      info = await stat(target);
    } catch (error) {
      const reason =
        errorCode(error) === 'ENOENT'
          ? `resource path "${entry}" does not exist (looked for ${target})`
          : `cannot read resource path "${entry}": ${error instanceof Error ? error.message : String(error)}`;
      problems.push(problem(shownConfig, undefined, `resources[${index}]`, reason));
      continue;
    }
    let found: Array<{ file: string; real?: string }>;
    if (info.isDirectory()) {
      try {
        found = await filesUnder(target);
      } catch (error) {
        problems.push(problem(shownConfig, undefined, `resources[${index}]`, `cannot read folder "${entry}": ${String(error)}`));
        continue;
      }
    } else if (info.isFile()) {
      found = [{ file: target }];
    } else {
      problems.push(problem(shownConfig, undefined, `resources[${index}]`, `"${entry}" is neither a file nor a folder`));
      continue;
    }
    for (const { file, real: known } of found) {
      const real = known ?? (await realpath(file).catch(() => file));
      if (seen.has(real)) continue;
      seen.add(real);
      files.push(file);
    }
  }

  const documents: InputDocument[] = [];
  const texts = await readAll(files);
  const unused = new Set(parsedFiles.keys());
  const cwd = process.cwd();
  files.forEach((file, index) => {
    const shown = displayPath(file, cwd);
    const read = texts[index]!;
    if ('error' in read) {
      const { error } = read;
      problems.push(problem(shown, undefined, '', `cannot read the file: ${error instanceof Error ? error.message : String(error)}`));
      return;
    }
    const key = `${shown}\u0000${file}`;
    unused.delete(key);
    const cached = parsedFiles.get(key);
    const parsed = cached !== undefined && cached.text === read.text ? cached.parsed : parseDocuments(shown, read.text);
    parsedFiles.set(key, { text: read.text, parsed });
    problems.push(...parsed.problems);
    documents.push(...parsed.documents);
  });
  for (const key of unused) parsedFiles.delete(key);

  const checked = checkDocuments(documents);
  problems.push(...checked.problems);
  if (config) problems.push(...crossCheck(shownConfig, config, checked.policies));
  if (problems.length > 0 || !config) return fail();

  return {
    configFile,
    config: { ...config, statePath: path.resolve(configFolder, config.statePath) },
    policies: checked.policies,
    endpoints: checked.endpoints,
    files,
  };
}
