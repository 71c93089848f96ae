import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    // Unit tests import packages' TypeScript sources; agent processes run the built dist.
    conditions: ['@llmesh/source']
  },
  ssr: {
    resolve: { conditions: ['@llmesh/source'] }
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['./test/setup.ts'],
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Multi-process tests start real agents and llama-servers: keep files sequential on 2 cores.
    fileParallelism: false
  }
})
