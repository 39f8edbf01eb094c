// Regenerates packages/core/schema/*.json from the zod schemas: `npm run schema -w @dnsplane/core`.
// test/json-schema.test.ts fails when the committed files differ from what this writes.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { JSON_SCHEMA_FILES, jsonSchemaText } from '../src/json-schema.js';

const folder = fileURLToPath(new URL('../schema/', import.meta.url));
mkdirSync(folder, { recursive: true });
for (const [name, generate] of Object.entries(JSON_SCHEMA_FILES)) {
  writeFileSync(`${folder}${name}`, jsonSchemaText(generate()));
  console.log(`wrote ${folder}${name}`);
}
