import { defineConfig } from 'vitest/config';

// Two projects, run together by `npm test` (test/run.mjs) or one at a time with `--project`.
//
// - unit: pure code (codecs, switch, conntrack ...), no privileges, no I/O worth isolating;
//   files run in parallel.
// - e2e: namespaces, TAPs, veths and real daemons inside the network sandbox that test/run.mjs
//   sets up as root. Files run one at a time because they share the sandbox's root network
//   namespace, /run/netns and the 2 CPUs that throughput assertions depend on; they run after
//   the unit project (groupOrder) so unit workers do not steal CPU from them. Timeouts are
//   generous because a single test may boot several namespaces and move real traffic.
export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
