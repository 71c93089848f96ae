import { defineConfig } from 'vitest/config'

/**
 * Two lanes.
 *
 * - `unit`: the packages' own tests that need no llama.cpp build, no libp2p peer from the
 *   fixtures and no child processes. No global setup; files run in parallel, unisolated.
 *   `pnpm test:unit`.
 * - `e2e`: `test/**` and the package tests that spawn processes or use the fixtures (the
 *   llama.cpp build, the tiny model on disk, a hostile libp2p peer). Its global setup makes
 *   the fixtures (cached); files run one at a time, after the unit lane, since they start real
 *   agents and llama-servers.
 *
 * `pnpm test` runs both (scripts/test.mjs).
 */
const E2E_PACKAGE_TESTS = [
  'packages/cli/src/cli-process.test.ts', // real llmesh processes: exit codes, log formats, SIGTERM
  'packages/cli/src/install.test.ts', // builds a deploy of the CLI and installs it into a temporary npm prefix
  'packages/cli/src/service-verify.test.ts', // spawns systemd-analyze verify on the generated unit
  'packages/fixtures/src/**/*.test.ts', // the fixtures themselves: netns, a real llama-server on the tiny model
  'packages/mesh/src/records-fuzz.test.ts', // a hostile libp2p peer from the fixtures
  'packages/runners/src/llama-server.test.ts', // spawns (a missing binary, setpriv)
  'packages/runners/src/pid-file.test.ts', // spawns and kills processes
  'packages/runners/src/process.test.ts', // spawns shells that read stdin and write stdout
  'packages/runners/src/stop-race.test.ts' // spawns a never-healthy server script
]

export default defineConfig({
  resolve: {
    // Unit tests import packages' TypeScript sources; agent processes run the built dist.
    conditions: ['@llmesh/source']
  },
  ssr: {
    resolve: { conditions: ['@llmesh/source'] }
  },
  test: {
    setupFiles: ['./test/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts'],
          exclude: ['**/node_modules/**', ...E2E_PACKAGE_TESTS],
          // Files share a worker's module cache instead of importing libp2p, fastify, zod and
          // yjs again per file (most of the lane's time). Safe while no unit test mocks a
          // module, stubs globals or leaves fake timers on: each restores what it changes.
          isolate: false,
          sequence: { groupOrder: 0 }
        }
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts', ...E2E_PACKAGE_TESTS],
          globalSetup: ['./test/global-setup.ts'],
          // Multi-process tests start real agents and llama-servers: keep files sequential on 2 cores.
          fileParallelism: false,
          sequence: { groupOrder: 1 }
        }
      }
    ]
  }
})
