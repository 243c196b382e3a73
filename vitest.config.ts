import { defineConfig } from 'vitest/config'

// Workspace packages resolve to their TypeScript sources in tests (no build step needed).
const conditions = ['@task-manager/source', 'module', 'node', 'development|production']

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    globalSetup: ['./packages/testing/src/global-setup.ts'],
    include: ['apps/*/test/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'services/*/test/**/*.test.ts'],
    // Generous: a test that starts service processes takes well over 20 s on a busy 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
})
