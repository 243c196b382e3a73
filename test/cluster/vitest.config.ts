import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'
import { BaseSequencer, type TestSpecification } from 'vitest/node'

/**
 * The files run in name order (10-install … 90-uninstall): each leaves the releases as the next expects, and
 * uninstalling comes last. Vitest's own order (slowest known first) would interleave them.
 */
class ByName extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    return [...files].sort((a, b) => a.moduleId.localeCompare(b.moduleId))
  }
}

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
    sequence: { shuffle: false, sequencer: ByName },
  },
})
