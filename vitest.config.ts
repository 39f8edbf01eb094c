import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const packages = ['core', 'bpf-parser', 'nftables', 'iptables', 'ebpf', 'agent'];
// Tests import workspace packages from source, so they never run against a stale build.
const alias = Object.fromEntries(
  packages.map((name) => [
    `@dnsplane/${name}`,
    fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url)),
  ]),
);

export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts', 'test/unit/**/*.test.ts'],
          exclude: ['**/*.kernel.test.ts', '**/node_modules/**'],
          environment: 'node',
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'kernel',
          // Needs root and the real kernel: nft, iptables, tc, bpf, network namespaces.
          include: ['packages/*/test/**/*.kernel.test.ts', 'test/conformance/**/*.test.ts', 'test/lab/**/*.test.ts'],
          environment: 'node',
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
