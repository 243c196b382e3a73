import type { TestProject } from 'vitest/node'
import {
  buildImage,
  detectTarget,
  ensureNamespace,
  helm,
  kubectl,
  SERVICES,
  TAG,
  type Target,
  waitReleaseReady,
} from './lib/cluster.ts'
import { ensureAwkwardSecrets, install, MAIN, OPEN, type Release } from './lib/releases.ts'
import { provideStandIns } from './lib/stand-ins.ts'

export interface InstallReport {
  /** `helm upgrade --install` returned after this long. */
  helmMs: number
  /** From the start of `helm install` until every pod of the release was Ready. */
  readyMs: number
  /** Warnings the API server sent back during the install (Pod Security and others). */
  warnings: string[]
}

declare module 'vitest' {
  export interface ProvidedContext {
    target: Target
    installs: Record<string, InstallReport>
    buildMs: Record<string, number>
  }
}

const log = (line: string) => console.log(`[cluster] ${line}`)

async function uninstallIfPresent(release: Release): Promise<void> {
  const listed = await helm(['-n', release.namespace, 'status', release.name], {
    allowFailure: true,
    timeoutMs: 60_000,
  })
  if (listed.code !== 0) return
  log(`removing the release ${release.name} left by an earlier run (PVCs and kept Secrets stay)`)
  await helm(['-n', release.namespace, 'uninstall', release.name, '--wait', '--timeout', '5m'], {
    timeoutMs: 360_000,
  })
}

async function installAndWait(release: Release, extra: string[]): Promise<InstallReport> {
  const started = Date.now()
  const { ms, warnings } = await install(release, extra)
  await waitReleaseReady(release.namespace, release.name, 900_000)
  const report = { helmMs: ms, readyMs: Date.now() - started, warnings }
  log(
    `${release.name}: helm install ${Math.round(ms / 1000)} s, every pod Ready after ${Math.round(report.readyMs / 1000)} s`,
  )
  return report
}

export default async function setup(project: TestProject) {
  const target = await detectTarget()
  log(
    `cluster: ${target.kind} (context ${target.context || '-'}), entry ${target.entryUrl}, images tag ${TAG}`,
  )
  const ready = await kubectl(['get', '--raw', '/readyz'], { allowFailure: true })
  if (ready.code !== 0) throw new Error(`the cluster does not answer /readyz: ${ready.stderr}`)

  const buildMs: Record<string, number> = {}
  if (process.env.CLUSTER_TEST_BUILD !== '0') {
    for (const service of SERVICES) {
      buildMs[service] = await buildImage(target, service)
      log(`image task-manager/${service}:${TAG} built and loaded in ${Math.round(buildMs[service] / 1000)} s`)
    }
  }

  const standIns = await provideStandIns(target, log)

  for (const release of [OPEN, MAIN]) await uninstallIfPresent(release)
  for (const release of [MAIN, OPEN]) await ensureNamespace(release.namespace)
  await ensureAwkwardSecrets(OPEN)
  const installs: Record<string, InstallReport> = {}
  // One after the other: two releases starting together on a small machine mostly measure the machine.
  installs[MAIN.name] = await installAndWait(MAIN, standIns)
  installs[OPEN.name] = await installAndWait(OPEN, standIns)

  project.provide('target', target)
  project.provide('installs', installs)
  project.provide('buildMs', buildMs)

  return async () => {
    if (process.env.CLUSTER_TEST_KEEP === '1') return
    // The next run installs from scratch again (on the kept PVCs and Secrets, as a reinstall would).
    for (const release of [MAIN, OPEN]) await uninstallIfPresent(release)
  }
}
