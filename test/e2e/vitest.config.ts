import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// The end-to-end and fault suites: whole systems of real processes started by the `pnpm start` launcher
// on free ports. One file at a time (each runs PostgreSQL and four services on a small machine), with
// the timeouts of process start-up.
const conditions = ['@task-manager/source', 'module', 'node', 'development|production']

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['test/e2e/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
  },
})
