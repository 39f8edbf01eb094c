#!/usr/bin/env node
// The `dnsplane` command: runs the compiled CLI (build with `npm run build`).
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error) => { console.error(error instanceof Error ? error.message : String(error)); process.exitCode = 1; },
);
