import { chmodSync, copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildHelperImage, ROOT, type Target } from './cluster.ts'
import { run } from './run.ts'

/**
 * What the umbrella chart pulls from a registry besides the project's images and PostgreSQL, on a cluster
 * that cannot pull (the live cluster: no registry, no internet — its up.sh provides stand-ins for
 * PostgreSQL and its exporter only).
 *
 * - NATS (`nats.image`): a stand-in under the very name the chart asks for, holding the pinned nats-server
 *   the local launcher uses (scripts/ensure-nats-server.sh, from PyPI or the Go module proxy) on the node
 *   base image of the project's Dockerfile; the chart's arguments and preStop hook call it as they would
 *   the official image.
 * - NATS's Prometheus exporter (`nats.exporter`): not served by the Go module proxy here, so it is left out
 *   (`nats.exporter.enabled=false`); the values say so, and the Prometheus test then expects no target for it.
 *
 * Returns the values the releases need on this cluster (none elsewhere: kind and minikube pull).
 */
export async function provideStandIns(target: Target, log: (line: string) => void): Promise<string[]> {
  if (target.kind !== 'live-cluster') return []
  const values = readFileSync(join(ROOT, 'charts/task-manager/values.yaml'), 'utf8')
  const nats = /^nats:\n(?:[ \t].*\n)*?\s+image:\n\s+repository:\s*(\S+)\n(?:\s+#.*\n)*\s+tag:\s*(\S+)/m.exec(
    values,
  )
  if (!nats) throw new Error('charts/task-manager/values.yaml: no nats.image.repository and tag')
  const image = `${nats[1]}:${nats[2]}`
  const binary = (
    await run('bash', [join(ROOT, 'scripts/ensure-nats-server.sh')], { timeoutMs: 600_000 })
  ).stdout
    .trim()
    .split('\n')
    .pop() as string
  const base = /ARG NODE_IMAGE=(\S+)/.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]
  if (!base) throw new Error('Dockerfile: no ARG NODE_IMAGE')
  const context = mkdtempSync(join(tmpdir(), 'cluster-nats-'))
  copyFileSync(binary, join(context, 'nats-server'))
  chmodSync(join(context, 'nats-server'), 0o755)
  writeFileSync(
    join(context, 'Containerfile'),
    `FROM ${base} AS nats\nCOPY nats-server /usr/local/bin/nats-server\nUSER 1000:1000\nENTRYPOINT ["/usr/local/bin/nats-server"]\n`,
  )
  const ms = await buildHelperImage(target, context, join(context, 'Containerfile'), 'nats', image)
  log(
    `stand-in ${image} (${binary}) built and loaded in ${Math.round(ms / 1000)} s; NATS's exporter left out`,
  )
  return ['--set', 'nats.exporter.enabled=false']
}
