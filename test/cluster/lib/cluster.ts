import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { run, stream, waitFor } from './run.ts'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const CHART = join(ROOT, 'charts/task-manager')
export const SERVICES = ['gateway', 'task-service', 'user-service', 'project-service'] as const
export type Service = (typeof SERVICES)[number]
export const DATABASES = ['task-service', 'user-service', 'project-service'] as const

/** The images' tag: the chart's appVersion, which the chart uses when no tag is set. */
export const TAG =
  /^appVersion:\s*"?([^"\s]+)"?/m.exec(readFileSync(join(CHART, 'Chart.yaml'), 'utf8'))?.[1] ?? '0.0.0'

export async function kubectl(
  args: string[],
  options: { timeoutMs?: number; input?: string; allowFailure?: boolean } = {},
) {
  return run('kubectl', args, {
    timeoutMs: options.timeoutMs ?? 60_000,
    input: options.input,
    allowFailure: options.allowFailure,
  })
}

export async function kubectlJson<T = any>(args: string[], timeoutMs = 60_000): Promise<T> {
  const { stdout } = await kubectl([...args, '-o', 'json'], { timeoutMs })
  return JSON.parse(stdout) as T
}

export async function helm(args: string[], options: { timeoutMs?: number; allowFailure?: boolean } = {}) {
  return run('helm', args, { timeoutMs: options.timeoutMs ?? 600_000, allowFailure: options.allowFailure })
}

export interface Pod {
  metadata: {
    name: string
    labels: Record<string, string>
    annotations?: Record<string, string>
    deletionTimestamp?: string
    uid: string
  }
  spec: { containers: { name: string; ports?: { name?: string; containerPort: number }[] }[] }
  status: {
    phase: string
    podIP?: string
    conditions?: { type: string; status: string }[]
    containerStatuses?: { name: string; ready: boolean; restartCount: number }[]
    initContainerStatuses?: { name: string; restartCount: number; state?: any; lastState?: any }[]
  }
}

export async function pods(namespace: string, selector: string): Promise<Pod[]> {
  const list = await kubectlJson<{ items: Pod[] }>(['-n', namespace, 'get', 'pods', '-l', selector])
  return list.items
}

export const isReady = (pod: Pod) =>
  !pod.metadata.deletionTimestamp &&
  pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true

/** Pods of one service (or of its database with `-postgresql`) in a release. */
export const selectorOf = (release: string, name: string) =>
  `app.kubernetes.io/instance=${release},app.kubernetes.io/name=${name}`

/** Waits until every Deployment and StatefulSet of the release has all its replicas updated and ready. */
export async function waitReleaseReady(
  namespace: string,
  release: string,
  timeoutMs = 600_000,
): Promise<void> {
  await waitFor(
    `every workload of release ${release} in ${namespace} to be ready`,
    async () => {
      const { items } = await kubectlJson<{ items: any[] }>([
        '-n',
        namespace,
        'get',
        'deployments,statefulsets',
        '-l',
        `app.kubernetes.io/instance=${release}`,
      ])
      if (items.length === 0) return false
      const pending = items.filter((w) => {
        const want = w.spec.replicas ?? 1
        const s = w.status ?? {}
        return (
          (s.observedGeneration ?? 0) < w.metadata.generation ||
          (s.updatedReplicas ?? 0) < want ||
          (s.readyReplicas ?? 0) < want ||
          (s.replicas ?? 0) > want
        )
      })
      if (pending.length > 0)
        throw new Error(`not ready: ${pending.map((w) => `${w.kind}/${w.metadata.name}`).join(', ')}`)
      return true
    },
    timeoutMs,
    2000,
  )
}

/** A command in a running container (the images have node; nothing else can be assumed). */
export async function exec(
  namespace: string,
  pod: string,
  container: string,
  command: string[],
  timeoutMs = 60_000,
) {
  return kubectl(['-n', namespace, 'exec', pod, '-c', container, '--', ...command], { timeoutMs })
}

/** Runs a Node script in a container of a pod and returns what it printed as JSON. */
export async function nodeIn<T = any>(
  namespace: string,
  pod: string,
  container: string,
  script: string,
  timeoutMs = 60_000,
): Promise<T> {
  const { stdout } = await exec(
    namespace,
    pod,
    container,
    ['node', '--input-type=module', '-e', script],
    timeoutMs,
  )
  return JSON.parse(stdout.trim().split('\n').pop() as string) as T
}

export type ClusterKind = 'live-cluster' | 'kind' | 'minikube' | 'other'

export interface Target {
  kind: ClusterKind
  context: string
  /** Base URL of the cluster's Traefik `web` entry point (Gateway API and Ingress). */
  entryUrl: string
  liveClusterDir?: string
}

export async function detectTarget(): Promise<Target> {
  const context = (await kubectl(['config', 'current-context'], { allowFailure: true })).stdout.trim()
  const nodes = await kubectlJson<{ items: any[] }>(['get', 'nodes'])
  const node = nodes.items[0]
  if (!node) throw new Error('the cluster has no node')
  const nodeIp = node.status.addresses.find((a: any) => a.type === 'InternalIP')?.address as string
  const liveClusterDir = process.env.LIVE_CLUSTER_DIR ?? resolve(ROOT, '../shared/live-cluster')
  let kind: ClusterKind = 'other'
  if (
    existsSync(join(liveClusterDir, 'build-image.sh')) &&
    node.metadata.name === (process.env.LC_NODE_NAME ?? 'live-node')
  )
    kind = 'live-cluster'
  else if (context.startsWith('kind-')) kind = 'kind'
  else if (context === 'minikube') kind = 'minikube'
  // Traefik's web entry point: NodePort 30080 (k8s/addons.sh); kind publishes it on localhost:8080.
  const entryUrl =
    process.env.CLUSTER_ENTRY_URL ?? (kind === 'kind' ? 'http://127.0.0.1:8080' : `http://${nodeIp}:30080`)
  return { kind, context, entryUrl, liveClusterDir: kind === 'live-cluster' ? liveClusterDir : undefined }
}

function containerEngine(): string {
  for (const engine of ['docker', 'podman']) {
    const paths = (process.env.PATH ?? '').split(':').map((dir) => join(dir, engine))
    if (paths.some((p) => existsSync(p))) return engine
  }
  throw new Error(
    'no docker or podman to build the images with (or set CLUSTER_TEST_BUILD=0 with the images already in the cluster)',
  )
}

/** Builds one image of the Dockerfile and makes it available to the cluster's nodes. */
export async function buildImage(target: Target, service: Service): Promise<number> {
  const image = `task-manager/${service}:${TAG}`
  if (target.kind === 'live-cluster') {
    const script = join(target.liveClusterDir as string, 'build-image.sh')
    return stream(`build ${service}`, script, [ROOT, join(ROOT, 'Dockerfile'), service, image], {
      timeoutMs: 1_200_000,
    })
  }
  const engine = containerEngine()
  let ms = await stream(`build ${service}`, engine, ['build', '--target', service, '-t', image, ROOT], {
    timeoutMs: 1_200_000,
  })
  if (target.kind === 'kind') {
    const cluster = target.context.slice('kind-'.length)
    ms += await stream(`load ${service}`, 'kind', ['load', 'docker-image', image, '--name', cluster], {
      timeoutMs: 600_000,
    })
  } else if (target.kind === 'minikube') {
    ms += await stream(`load ${service}`, 'minikube', ['image', 'load', image], { timeoutMs: 600_000 })
  }
  return ms
}

/** Builds a helper image of the suite (not the project's) from `dockerfile` and makes it available to the cluster. */
export async function buildHelperImage(
  target: Target,
  context: string,
  dockerfile: string,
  stage: string,
  image: string,
): Promise<number> {
  if (target.kind === 'live-cluster') {
    return stream(
      `build ${image}`,
      join(target.liveClusterDir as string, 'build-image.sh'),
      [context, dockerfile, stage, image],
      { timeoutMs: 1_200_000 },
    )
  }
  const engine = containerEngine()
  let ms = await stream(
    `build ${image}`,
    engine,
    ['build', '-f', dockerfile, '--target', stage, '-t', image, context],
    { timeoutMs: 1_200_000 },
  )
  if (target.kind === 'kind')
    ms += await stream(
      `load ${image}`,
      'kind',
      ['load', 'docker-image', image, '--name', target.context.slice('kind-'.length)],
      { timeoutMs: 600_000 },
    )
  else if (target.kind === 'minikube')
    ms += await stream(`load ${image}`, 'minikube', ['image', 'load', image], { timeoutMs: 600_000 })
  return ms
}

/** The namespace with the Pod Security labels of k8s/namespace.yaml. */
export async function ensureNamespace(name: string): Promise<void> {
  const manifest = readFileSync(join(ROOT, 'k8s/namespace.yaml'), 'utf8').replace(
    /^(\s+name:[ \t]*)task-manager[ \t]*$/m,
    `$1${name}`,
  )
  if (!manifest.includes(`name: ${name}`))
    throw new Error('k8s/namespace.yaml: could not set the namespace name')
  await kubectl(['apply', '-f', '-'], { input: manifest })
}
