import { join } from 'node:path'
import { CHART, DATABASES, helm, kubectl, SERVICES } from './cluster.ts'

/** One installed release of charts/task-manager and how to reach it through Traefik. */
export interface Release {
  name: string
  namespace: string
  /** Host names Traefik routes to this release: through its HTTPRoute and through its Ingress. */
  routeHost: string
  ingressHost: string
  auth: 'required' | 'disabled'
  /** `helm upgrade --install` arguments besides release, chart and namespace. */
  values: string[]
}

// Generous per-client limits: every request of the suite comes from one client address, and the load
// tests send thousands (the limits themselves are tested by the end-to-end suite).
const noRateLimits = [
  'gateway.env.RATE_LIMIT_READS_PER_MINUTE=1000000',
  'gateway.env.RATE_LIMIT_WRITES_PER_MINUTE=1000000',
  'gateway.env.RATE_LIMIT_CREATES_PER_MINUTE=1000000',
  'gateway.env.RATE_LIMIT_LOGIN_PER_MINUTE=1000000',
  'user-service.env.LOGIN_RATE_LIMIT_PER_CLIENT=1000000',
  'user-service.env.REGISTRATION_RATE_LIMIT_PER_CLIENT=1000000',
  // The task-service's own per-replica guard for direct calls (ten times the gateway's contract).
  'task-service.env.RATE_LIMIT_READS_PER_MINUTE=1000000',
  'task-service.env.RATE_LIMIT_WRITES_PER_MINUTE=1000000',
  'task-service.env.RATE_LIMIT_CREATES_PER_MINUTE=1000000',
].flatMap((v) => ['--set', v])

/**
 * The main release: the kind values (what a laptop user installs), two user-service replicas (shared
 * signing keys), the HTTPRoute and an Ingress, each on a host name of its own so a request proves its path.
 */
export const MAIN: Release = {
  name: 'tm',
  namespace: process.env.CLUSTER_TEST_NAMESPACE ?? 'task-manager-live',
  routeHost: 'route.task-manager.test',
  ingressHost: 'ingress.task-manager.test',
  auth: 'required',
  values: [
    '-f',
    join(CHART, 'values-kind.yaml'),
    '--set',
    'user-service.replicaCount=2',
    '--set',
    'httpRoute.hostnames[0]=route.task-manager.test',
    '--set',
    'ingress.enabled=true',
    '--set',
    'ingress.host=ingress.task-manager.test',
    ...noRateLimits,
  ],
}

/** Database passwords a URL would need encoded (the open release brings them in its own Secrets). */
export const AWKWARD_PASSWORDS: Record<string, string> = {
  'task-service': 'p@ss:w/rd?#%25&=+ "quoted"',
  'user-service': "it's/@:%?#[]!$&()*+,;=",
  'project-service': 'ünïcødé pass@host:5432/db?x=1#frag',
}

/**
 * The original open API (AUTH_MODE=disabled) in a namespace of its own, on the chart's defaults otherwise
 * (Gateway class, listener port, ingress controller namespace), one replica per service, and database
 * passwords full of URL delimiters.
 */
export const OPEN: Release = {
  name: 'tm-open',
  namespace: `${MAIN.namespace}-open`,
  routeHost: 'open.task-manager.test',
  ingressHost: 'ingress-open.task-manager.test',
  auth: 'disabled',
  values: [
    ...SERVICES.flatMap((s) => [
      '--set',
      `${s}.authMode=disabled`,
      '--set',
      `${s}.autoscaling.enabled=false`,
      '--set',
      `${s}.replicaCount=1`,
    ]),
    ...DATABASES.flatMap((s) => ['--set', `${s}.postgresql.auth.existingSecret=${dbSecret('tm-open', s)}`]),
    '--set',
    'httpRoute.hostnames[0]=open.task-manager.test',
    '--set',
    'ingress.enabled=true',
    '--set',
    'ingress.host=ingress-open.task-manager.test',
  ],
}

/** The open release's own database Secret of a service. */
export function dbSecret(release: string, service: string): string {
  return `${release}-${service}-awkward-db`
}

/** Creates the open release's database Secrets once (kept: the data on the PVCs was made with them). */
export async function ensureAwkwardSecrets(release: Release): Promise<void> {
  for (const service of DATABASES) {
    const name = dbSecret(release.name, service)
    const exists = await kubectl(['-n', release.namespace, 'get', 'secret', name], { allowFailure: true })
    if (exists.code === 0) continue
    await kubectl([
      '-n',
      release.namespace,
      'create',
      'secret',
      'generic',
      name,
      `--from-literal=password=${AWKWARD_PASSWORDS[service]}`,
    ])
  }
}

/** `helm upgrade --install` of a release; returns the API server's warnings (stderr lines). */
export async function install(
  release: Release,
  extra: string[] = [],
): Promise<{ ms: number; warnings: string[] }> {
  await helm(['dependency', 'build', CHART], { timeoutMs: 120_000 })
  const { stderr, ms } = await helm(
    ['upgrade', '--install', release.name, CHART, '-n', release.namespace, ...release.values, ...extra],
    { timeoutMs: 300_000 },
  )
  return { ms, warnings: warningsIn(stderr) }
}

export function warningsIn(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^(W\d{4}|warning)/i.test(line))
}

/** `helm upgrade` keeping every value of the release and changing `sets` (what a user does to change one thing). */
export async function upgrade(
  release: Release,
  sets: string[],
  extra: string[] = [],
): Promise<{ ms: number; warnings: string[] }> {
  const { stderr, ms } = await helm(
    [
      'upgrade',
      release.name,
      CHART,
      '-n',
      release.namespace,
      // The release's values with this chart's defaults under them (a chart that gained values since the
      // install renders; --reuse-values would leave the new keys out).
      '--reset-then-reuse-values',
      ...sets.flatMap((v) => ['--set', v]),
      ...extra,
    ],
    { timeoutMs: 300_000 },
  )
  return { ms, warnings: warningsIn(stderr) }
}
