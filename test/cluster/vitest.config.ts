import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// The live-cluster suite (`pnpm test:cluster`): against the current kube context, images built from the
// Dockerfile, charts/task-manager installed with helm. One file at a time, in name order, with the
// deadlines of a busy two-core machine; every wait inside has its own deadline and says what it waited for.
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/cluster/**/*.test.ts'],
    globalSetup: ['test/cluster/global-setup.ts'],
    testTimeout: 600_000,
    hookTimeout: 1_800_000,
    pool: 'forks',
    fileParallelism: false,
    sequence: { shuffle: false },
  },
})
