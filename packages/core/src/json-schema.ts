// JSON Schemas for editors and other tools, generated from the same zod schemas that validate
// the input (their input side: what a user writes, before defaults and canonicalisation).
// Rules that JSON Schema cannot express (selector syntax, domain patterns, port ranges in
// order, cross-field checks) are enforced only by `dnsplane validate`.
import { z } from 'zod';
import { DnsplaneConfigSchema } from './config.js';
import { EndpointSchema, PolicySchema } from './resources.js';

export type JsonSchema = Record<string, unknown>;

function generate(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12', unrepresentable: 'any' }) as JsonSchema;
}

export const configJsonSchema = (): JsonSchema => generate(DnsplaneConfigSchema);
export const policyJsonSchema = (): JsonSchema => generate(PolicySchema);
export const endpointJsonSchema = (): JsonSchema => generate(EndpointSchema);

/** The committed schema files (packages/core/schema/<name>) and their generators. */
export const JSON_SCHEMA_FILES: Readonly<Record<string, () => JsonSchema>> = {
  'config.schema.json': configJsonSchema,
  'policy.schema.json': policyJsonSchema,
  'endpoint.schema.json': endpointJsonSchema,
};

/** The exact text written to a schema file (stable: 2-space JSON with a final newline). */
export function jsonSchemaText(schema: JsonSchema): string {
  return `${JSON.stringify(schema, null, 2)}\n`;
}
