import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { DATABASES, kubectl, kubectlJson, nodeIn, type Pod, pods, selectorOf, TAG } from './lib/cluster.ts'
import { MAIN } from './lib/releases.ts'
import { waitFor } from './lib/run.ts'

// NetworkPolicies as the cluster enforces them: TCP connections from real pods of the release (and from a
// pod that is not part of it) to every service and database, allowed where the chart says, refused elsewhere.

const ns = MAIN.namespace
const INTRUDER = 'netpol-intruder'
type Outcome = 'connected' | 'refused'

/** Tries a TCP connection from `pod` to each target (3 s each, in parallel). */
async function connections(
  pod: string,
  container: string,
  targets: string[],
): Promise<Record<string, Outcome>> {
  const script = `import net from 'node:net'
    const targets = ${JSON.stringify(targets)}
    const outcome = (t) => new Promise((resolve) => {
      const [host, port] = t.split(':')
      const socket = net.connect({ host, port: Number(port), timeout: 3000 })
      socket.on('connect', () => { socket.destroy(); resolve('connected') })
      socket.on('timeout', () => { socket.destroy(); resolve('refused') })
      socket.on('error', () => resolve('refused'))
    })
    const results = await Promise.all(targets.map(outcome))
    console.log(JSON.stringify(Object.fromEntries(targets.map((t, i) => [t, results[i]]))))`
  return nodeIn(ns, pod, container, script, 60_000)
}

let byName: Record<string, Pod>
let dbIp: Record<string, string>
let dbClusterIp: Record<string, string>
const ports: Record<string, number> = {
  gateway: 8006,
  'task-service': 8003,
  'user-service': 8004,
  'project-service': 8005,
}
const http = (name: string) => `${byName[name]?.status.podIP}:${ports[name]}`

beforeAll(async () => {
  byName = {}
  for (const name of Object.keys(ports)) {
    const ready = (await pods(ns, selectorOf(MAIN.name, name))).filter(
      (p) => p.status.podIP && !p.metadata.deletionTimestamp,
    )
    if (!ready[0]) throw new Error(`no running pod of ${name}`)
    byName[name] = ready[0]
  }
  dbIp = {}
  dbClusterIp = {}
  for (const service of DATABASES) {
    const [db] = await pods(ns, selectorOf(MAIN.name, `${service}-postgresql`))
    dbIp[service] = `${db?.status.podIP}:5432`
    const svc = await kubectlJson(['-n', ns, 'get', 'service', `${MAIN.name}-${service}-postgresql`])
    dbClusterIp[service] = `${svc.spec.clusterIP}:5432`
  }
  // A pod of no service of the system (restricted, so admission lets it in), with node to make connections.
  await kubectl(['-n', ns, 'delete', 'pod', INTRUDER, '--ignore-not-found', '--wait=true'], {
    timeoutMs: 120_000,
  })
  const manifest = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: INTRUDER, labels: { 'app.kubernetes.io/name': 'intruder' } },
    spec: {
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'intruder',
          image: `task-manager/gateway:${TAG}`,
          imagePullPolicy: 'IfNotPresent',
          command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'],
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          },
          resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { cpu: '200m', memory: '96Mi' } },
        },
      ],
    },
  }
  await kubectl(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(manifest) })
  await waitFor(
    'the intruder pod to run',
    async () => {
      const pod = await kubectlJson(['-n', ns, 'get', 'pod', INTRUDER])
      return pod.status.phase === 'Running'
    },
    180_000,
    2000,
  )
})

afterAll(async () => {
  await kubectl(['-n', ns, 'delete', 'pod', INTRUDER, '--ignore-not-found', '--wait=false'], {
    allowFailure: true,
  })
})

describe('NetworkPolicies', () => {
  test('a pod that is not part of the system is refused by every service and every database', async () => {
    const targets = [...Object.keys(ports).map(http), ...Object.values(dbIp), ...Object.values(dbClusterIp)]
    const outcomes = await connections(INTRUDER, 'intruder', targets)
    expect(Object.entries(outcomes).filter(([, o]) => o !== 'refused')).toEqual([])
  })

  test('the paths the system uses are open', async () => {
    const allowed: [string, string[]][] = [
      ['gateway', [http('task-service'), http('user-service'), http('project-service')]],
      [
        'task-service',
        [
          http('project-service'),
          http('user-service'),
          dbClusterIp['task-service'] as string,
          dbIp['task-service'] as string,
        ],
      ],
      ['user-service', [dbClusterIp['user-service'] as string]],
      ['project-service', [http('user-service'), dbClusterIp['project-service'] as string]],
    ]
    for (const [from, targets] of allowed) {
      const outcomes = await connections(byName[from]!.metadata.name, from, targets)
      expect(
        Object.entries(outcomes).filter(([, o]) => o !== 'connected'),
        `from ${from}`,
      ).toEqual([])
    }
  })

  test('each database refuses the other services, and services refuse callers they do not serve', async () => {
    const denied: [string, string[]][] = [
      ['gateway', Object.values(dbClusterIp)],
      ['task-service', [dbClusterIp['user-service'] as string, dbClusterIp['project-service'] as string]],
      [
        'user-service',
        [http('task-service'), http('project-service'), dbClusterIp['task-service'] as string],
      ],
      [
        'project-service',
        [http('task-service'), dbClusterIp['task-service'] as string, dbIp['user-service'] as string],
      ],
    ]
    for (const [from, targets] of denied) {
      const outcomes = await connections(byName[from]!.metadata.name, from, targets)
      expect(
        Object.entries(outcomes).filter(([, o]) => o !== 'refused'),
        `from ${from}`,
      ).toEqual([])
    }
  })
})
