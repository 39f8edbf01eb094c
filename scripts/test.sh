#!/usr/bin/env bash
# The whole suite: unit tests (no privileges) then kernel tests (root, real kernel).
# `npm test` runs the bootstrap first (pretest).
set -euo pipefail
cd "$(dirname "$0")/.."
# tests and benchmarks are TypeScript strict too; vitest itself does not type-check
npx tsc -p tsconfig.tests.json
npx vitest run --project unit
if [[ $(id -u) -ne 0 ]]; then
  echo "test: kernel project needs root; run npm test as root" >&2
  exit 1
fi
npx vitest run --project kernel
