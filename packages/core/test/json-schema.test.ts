import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JSON_SCHEMA_FILES, jsonSchemaText } from '../src/json-schema.js';

describe('committed JSON Schemas', () => {
  for (const [name, generate] of Object.entries(JSON_SCHEMA_FILES)) {
    it(`packages/core/schema/${name} matches the zod schema (run "npm run schema -w @dnsplane/core" after changing it)`, () => {
      const committed = readFileSync(new URL(`../schema/${name}`, import.meta.url), 'utf8');
      expect(committed).toBe(jsonSchemaText(generate()));
    });
  }

  it('forbids unknown fields and describes defaults', () => {
    const config = JSON_SCHEMA_FILES['config.schema.json']?.() as {
      additionalProperties: unknown;
      properties: { dataplane: { default: unknown; enum: unknown } };
    };
    expect(config.additionalProperties).toBe(false);
    expect(config.properties.dataplane.default).toBe('nftables');
    expect(config.properties.dataplane.enum).toEqual(['nftables', 'iptables', 'ebpf']);
    const policy = JSON_SCHEMA_FILES['policy.schema.json']?.() as { required: string[] };
    expect(policy.required).toEqual(expect.arrayContaining(['kind', 'metadata', 'spec']));
  });
});
