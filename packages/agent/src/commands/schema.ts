// `dnsplane schema`: the JSON Schemas of the config and resources (from core's zod schemas).
import { readFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { JSON_SCHEMA_FILES, jsonSchemaText } from '@dnsplane/core';
import { z } from 'zod';
import type { Command } from '../command.js';
import { GLOBAL_HELP, logLevelSchema } from '../command.js';
import { writeFileAtomic } from '../state-file.js';
import { parseCommandLine, UsageError } from '../usage.js';

const schema = z.object({
  write: z.string().min(1, 'needs a folder').optional(),
  check: z.string().min(1, 'needs a folder').optional(),
  name: z.string().optional(),
  help: z.boolean().optional(),
  'log-level': logLevelSchema.optional(),
});

export const schemaCommand: Command = {
  name: 'schema',
  summary: 'print or write the JSON Schemas of dnsplane.yaml, Policy and Endpoint',
  help: `Usage: dnsplane schema [--name FILE] [--write DIR | --check DIR]

Prints the JSON Schemas generated from the zod schemas that validate the input
(${Object.keys(JSON_SCHEMA_FILES).join(', ')}). Without --name, prints one JSON object
mapping each file name to its schema.

Options:
  --name FILE     only this schema (e.g. config.schema.json)
  --write DIR     write the schema files into DIR instead of printing them
  --check DIR     exit 1 when the files in DIR differ from the generated ones
${GLOBAL_HELP}`,
  async run(argv, context) {
    const args = parseCommandLine('schema', argv, {
      write: { type: 'string' },
      check: { type: 'string' },
      name: { type: 'string' },
    }, schema);
    if (args.help) {
      context.environment.stdout.write(`${this.help}\n`);
      return 0;
    }
    const { environment } = context;
    context.container(args['log-level'] ?? 'warn');
    if (args.write !== undefined && args.check !== undefined) {
      throw new UsageError('dnsplane schema: --write and --check cannot be combined', 'schema');
    }
    let names = Object.keys(JSON_SCHEMA_FILES);
    if (args.name !== undefined) {
      if (!names.includes(args.name)) {
        throw new UsageError(`dnsplane schema: --name: must be one of ${names.join(', ')}`, 'schema');
      }
      names = [args.name];
    }
    const texts = new Map(names.map((name) => [name, jsonSchemaText((JSON_SCHEMA_FILES[name] as () => Record<string, unknown>)())]));
    if (args.write !== undefined) {
      const directory = resolvePath(environment.cwd, args.write);
      for (const [name, text] of texts) {
        await writeFileAtomic(join(directory, name), text);
        environment.stdout.write(`wrote ${join(directory, name)}\n`);
      }
      return 0;
    }
    if (args.check !== undefined) {
      const directory = resolvePath(environment.cwd, args.check);
      let stale = 0;
      for (const [name, text] of texts) {
        const onDisk = await readFile(join(directory, name), 'utf8').catch(() => undefined);
        if (onDisk !== text) {
          stale++;
          environment.stderr.write(`${join(directory, name)}: out of date; run \`npm run schema\`\n`);
        }
      }
      return stale === 0 ? 0 : 1;
    }
    if (args.name !== undefined) {
      environment.stdout.write(texts.get(args.name) ?? '');
    } else {
      const all = Object.fromEntries([...texts].map(([name, text]) => [name, JSON.parse(text) as unknown]));
      environment.stdout.write(`${JSON.stringify(all, null, 2)}\n`);
    }
    return 0;
  },
};
