// The parser loaded afresh for a test: configured with the test file's settings and domain
// sets, and closed with its pins removed after that test, whatever its outcome.
import type { DnsSettings, DomainSet } from '@dnsplane/core';
import { afterEach } from 'vitest';
import { DnsParserProgram } from '../src/index.js';
import { testPinRoot } from './kernel-harness.js';

/** Registers the cleanup (afterEach) and returns the function a test calls to load one. */
export function parsersForEachTest(dns: DnsSettings, sets: readonly DomainSet[]): () => DnsParserProgram {
  const opened: Array<{ program: DnsParserProgram; pinRoot: string }> = [];
  afterEach(() => {
    for (const { program, pinRoot } of opened.splice(0)) {
      program.close();
      DnsParserProgram.removePins(pinRoot);
    }
  });
  return () => {
    const pinRoot = testPinRoot();
    const program = DnsParserProgram.load({ pinRoot });
    opened.push({ program, pinRoot });
    program.configure(dns);
    program.setDomainSets(sets);
    return program;
  };
}
