import { describe, expect, test } from 'vitest'
import { DATABASES, helm, kubectlJson } from './lib/cluster.ts'
import { dbSecret, OPEN } from './lib/releases.ts'
import { waitFor } from './lib/run.ts'

// `helm uninstall` leaves only what docs/deployment.md says it keeps: each database's PVC, NATS's and the kept
// Secrets (database passwords the chart generated, the token signing keys), so a reinstall finds its data.

const KINDS =
  'all,configmaps,secrets,persistentvolumeclaims,serviceaccounts,networkpolicies,poddisruptionbudgets,horizontalpodautoscalers,ingresses,gateways.gateway.networking.k8s.io,httproutes.gateway.networking.k8s.io'

describe('helm uninstall', () => {
  test('leaves the PVCs and kept Secrets only', async () => {
    await helm(['uninstall', OPEN.name, '-n', OPEN.namespace, '--wait', '--timeout', '5m'])
    const left = await waitFor(
      'the release objects to be deleted',
      async () => {
        const { items } = await kubectlJson<{ items: any[] }>(['-n', OPEN.namespace, 'get', KINDS])
        const names = items
          .map((o) => `${o.kind}/${o.metadata.name}`)
          // Made by Kubernetes in every namespace, or by this suite before the install.
          .filter((n) => n !== 'ConfigMap/kube-root-ca.crt' && n !== 'ServiceAccount/default')
          .filter((n) => !DATABASES.some((s) => n === `Secret/${dbSecret(OPEN.name, s)}`))
          .sort()
        return names.some((n) => /^(Pod|Deployment|StatefulSet|ReplicaSet)\//.test(n)) ? false : names
      },
      300_000,
      3000,
    )
    expect(left).toEqual(
      [
        ...DATABASES.map((s) => `PersistentVolumeClaim/data-${OPEN.name}-${s}-postgresql-0`),
        // NATS's JetStream store (a StatefulSet's claim, as the databases').
        `PersistentVolumeClaim/data-${OPEN.name}-nats-0`,
        // The database passwords come from the suite's own Secrets in this release; the signing keys are the chart's.
        `Secret/${OPEN.name}-user-service-signing-keys`,
      ].sort(),
    )
  })
})
