import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildHelperImage, kubectl, type Pod, ROOT, type Target } from './cluster.ts'
import { run, waitFor } from './run.ts'

export const MONITORING = 'monitoring'

/** Where the cluster's Prometheus answers, through the API server's service proxy. */
export interface PrometheusHandle {
  service: string
  /** `kubectl get --raw` path prefix of its HTTP API. */
  api: string
}

/**
 * A Prometheus for the suite: the cluster's own when the Prometheus Operator runs one (k8s/addons.sh
 * installs kube-prometheus-stack), else Debian's prometheus binary in a small image of the suite, in
 * namespace `monitoring` (where the chart's NetworkPolicies admit scrapes from), scraping the pods whose
 * prometheus.io/* annotations ask for it in the given namespaces (the pods running when it is called).
 */
export async function ensurePrometheus(target: Target, namespaces: string[]): Promise<PrometheusHandle> {
  const operator = await kubectl(['-n', MONITORING, 'get', 'service', 'kube-prometheus-stack-prometheus'], {
    allowFailure: true,
  })
  if (operator.code === 0) {
    return {
      service: 'kube-prometheus-stack-prometheus',
      api: `/api/v1/namespaces/${MONITORING}/services/http:kube-prometheus-stack-prometheus:9090/proxy`,
    }
  }
  const binary = process.env.PROMETHEUS_BINARY ?? '/usr/bin/prometheus'
  if (!existsSync(binary))
    throw new Error(`no ${binary}: install Debian's prometheus (apt-get install prometheus), as .ci/run does`)
  const version = (await run(binary, ['--version'])).stdout.match(/version (\S+)/)?.[1] ?? 'local'
  const image = `task-manager-test/prometheus:${version.replace(/[^A-Za-z0-9._-]/g, '_')}`
  const context = mkdtempSync(join(tmpdir(), 'cluster-prometheus-'))
  copyFileSync(binary, join(context, 'prometheus'))
  // The node base image is the one the project's Dockerfile already uses (so it is on the node).
  const base = /ARG NODE_IMAGE=(\S+)/.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]
  if (!base) throw new Error('Dockerfile: no ARG NODE_IMAGE')
  writeFileSync(
    join(context, 'Containerfile'),
    `FROM ${base} AS prometheus\nCOPY prometheus /usr/local/bin/prometheus\nUSER 65534:65534\nENTRYPOINT ["/usr/local/bin/prometheus"]\n`,
  )
  await buildHelperImage(target, context, join(context, 'Containerfile'), 'prometheus', image)

  // Debian builds Prometheus without its Kubernetes service discovery (`kubernetes_sd_configs` is not in its
  // config schema), so the suite does the discovery step itself: every running pod whose prometheus.io/*
  // annotations ask to be scraped becomes a target at its pod IP, annotated port and path, labelled with its
  // namespace and pod. The scrape itself is Prometheus's, from namespace `monitoring`, through the
  // NetworkPolicies. (A Prometheus with Kubernetes discovery — the operator's — is used as it is, above.)
  const scrapeConfigs = []
  for (const namespace of namespaces) {
    const { stdout } = await kubectl(['-n', namespace, 'get', 'pods', '-o', 'json'])
    for (const pod of (JSON.parse(stdout) as { items: Pod[] }).items) {
      const annotations = pod.metadata.annotations ?? {}
      if (annotations['prometheus.io/scrape'] !== 'true' || pod.metadata.deletionTimestamp) continue
      if (pod.status.phase !== 'Running' || !pod.status.podIP) continue
      scrapeConfigs.push({
        job_name: `${namespace}/${pod.metadata.name}`,
        metrics_path: annotations['prometheus.io/path'] ?? '/metrics',
        static_configs: [
          {
            targets: [`${pod.status.podIP}:${annotations['prometheus.io/port']}`],
            labels: { namespace, pod: pod.metadata.name },
          },
        ],
      })
    }
  }
  const config = {
    global: { scrape_interval: '5s', scrape_timeout: '4s' },
    scrape_configs: scrapeConfigs,
  }
  const labels = {
    'app.kubernetes.io/name': 'prometheus',
    'app.kubernetes.io/part-of': 'task-manager-cluster-test',
  }
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: MONITORING } },
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'prometheus', namespace: MONITORING, labels },
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'prometheus', namespace: MONITORING, labels },
      data: { 'prometheus.yml': JSON.stringify(config) },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'prometheus', namespace: MONITORING, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } },
        template: {
          metadata: {
            labels,
            // The targets are the pods of this moment: a new set rolls Prometheus out again.
            annotations: {
              'checksum/config': createHash('sha256').update(JSON.stringify(config)).digest('hex'),
            },
          },
          spec: {
            serviceAccountName: 'prometheus',
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65534,
              runAsGroup: 65534,
              seccompProfile: { type: 'RuntimeDefault' },
            },
            containers: [
              {
                name: 'prometheus',
                image,
                imagePullPolicy: 'IfNotPresent',
                args: [
                  '--config.file=/etc/prometheus/prometheus.yml',
                  '--storage.tsdb.path=/prometheus',
                  '--storage.tsdb.retention.time=2h',
                  '--web.listen-address=:9090',
                ],
                ports: [{ name: 'http', containerPort: 9090 }],
                readinessProbe: { httpGet: { path: '/-/ready', port: 'http' }, periodSeconds: 5 },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ['ALL'] },
                },
                resources: {
                  requests: { cpu: '20m', memory: '64Mi' },
                  limits: { cpu: '500m', memory: '256Mi' },
                },
                volumeMounts: [
                  { name: 'config', mountPath: '/etc/prometheus' },
                  { name: 'data', mountPath: '/prometheus' },
                ],
              },
            ],
            volumes: [
              { name: 'config', configMap: { name: 'prometheus' } },
              { name: 'data', emptyDir: { sizeLimit: '256Mi' } },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'prometheus', namespace: MONITORING, labels },
      spec: {
        selector: { 'app.kubernetes.io/name': 'prometheus' },
        ports: [{ name: 'http', port: 9090, targetPort: 'http' }],
      },
    },
  ]
  await kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
  })
  await kubectl(['-n', MONITORING, 'rollout', 'status', 'deployment/prometheus', '--timeout=300s'], {
    timeoutMs: 320_000,
  })
  return {
    service: 'prometheus',
    api: `/api/v1/namespaces/${MONITORING}/services/http:prometheus:9090/proxy`,
  }
}

export interface ScrapeTarget {
  labels: Record<string, string>
  health: string
  lastError: string
  scrapeUrl: string
}

export async function activeTargets(handle: PrometheusHandle): Promise<ScrapeTarget[]> {
  const { stdout } = await kubectl(['get', '--raw', `${handle.api}/api/v1/targets?state=active`])
  return (JSON.parse(stdout) as { data: { activeTargets: ScrapeTarget[] } }).data.activeTargets
}

export async function waitForPrometheus(handle: PrometheusHandle): Promise<void> {
  await waitFor(
    'Prometheus to answer through the API server proxy',
    async () => (await kubectl(['get', '--raw', `${handle.api}/-/ready`], { allowFailure: true })).code === 0,
    180_000,
    3000,
  )
}
