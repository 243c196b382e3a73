import { describe, expect, inject, test } from 'vitest'
import { CHART, DATABASES, helm, kubectl, kubectlJson, nodeIn, pods, selectorOf } from './lib/cluster.ts'
import { client, signUp } from './lib/http.ts'
import { AWKWARD_PASSWORDS, MAIN, OPEN, warningsIn } from './lib/releases.ts'

// The first `helm install` a user makes, and what the live cluster found in it (docs/deployment.md).

const target = inject('target')
const installs = inject('installs')

describe('helm install', () => {
  test('both releases install with zero warnings from the API server (Pod Security restricted is enforced)', async () => {
    for (const release of [MAIN, OPEN]) {
      expect(installs[release.name]?.warnings, `warnings while installing ${release.name}`).toEqual([])
      const ns = await kubectlJson(['get', 'namespace', release.namespace])
      expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted')
      // The API server re-evaluates every running pod against the level: any violation is a warning.
      const { stderr } = await kubectl([
        'label',
        '--dry-run=server',
        '--overwrite',
        'namespace',
        release.namespace,
        'pod-security.kubernetes.io/enforce=restricted',
      ])
      expect(warningsIn(stderr), `Pod Security warnings for the pods of ${release.namespace}`).toEqual([])
    }
  })

  test('helm test passes for both releases', async () => {
    for (const release of [MAIN, OPEN]) {
      const result = await helm(
        ['test', release.name, '-n', release.namespace, '--timeout', '5m', '--logs'],
        { allowFailure: true },
      )
      expect(result.code, `helm test ${release.name}:\n${result.stdout}\n${result.stderr}`).toBe(0)
    }
  })

  test('the migrate init containers never crashed: each waited for its database instead (finding 2)', async () => {
    for (const release of [MAIN, OPEN]) {
      for (const service of DATABASES) {
        for (const pod of await pods(release.namespace, selectorOf(release.name, service))) {
          const migrate = pod.status.initContainerStatuses?.find((c) => c.name === 'migrate')
          expect(migrate, `${pod.metadata.name} has a migrate init container`).toBeDefined()
          expect(migrate?.restartCount, `${pod.metadata.name}: migrate restarts`).toBe(0)
        }
      }
    }
  })

  test('no probe of a service was ever refused with 503 (probes are never shed; finding 3)', async () => {
    for (const release of [MAIN, OPEN]) {
      const events = await kubectlJson<{ items: any[] }>([
        '-n',
        release.namespace,
        'get',
        'events',
        '--field-selector',
        'reason=Unhealthy',
      ])
      // Startup and liveness probes both ask /health/live; a 503 there is load shedding (readiness 503s
      // while a database starts are expected and not counted).
      const shed = events.items.filter((e) =>
        /^(Startup|Liveness) probe failed: HTTP probe failed with statuscode: 503/.test(e.message ?? ''),
      )
      expect(shed.map((e) => `${e.involvedObject.name}: ${e.message}`)).toEqual([])
      for (const pod of await pods(release.namespace, `app.kubernetes.io/instance=${release.name}`)) {
        for (const c of pod.status.containerStatuses ?? []) {
          expect(c.restartCount, `${pod.metadata.name}/${c.name} restarts`).toBe(0)
        }
      }
    }
  })
})

describe('signing keys (finding 1)', () => {
  test('the chart made one signing-key Secret, kept on uninstall, holding a private Ed25519 JWK', async () => {
    const secret = await kubectlJson([
      '-n',
      MAIN.namespace,
      'get',
      'secret',
      `${MAIN.name}-user-service-signing-keys`,
    ])
    expect(secret.metadata.annotations['helm.sh/resource-policy']).toBe('keep')
    const keys = JSON.parse(Buffer.from(secret.data.JWT_PRIVATE_KEYS, 'base64').toString())
    expect(keys).toEqual([
      expect.objectContaining({
        kty: 'OKP',
        crv: 'Ed25519',
        d: expect.any(String),
        x: expect.any(String),
        kid: expect.any(String),
      }),
    ])
  })

  test('with two user-service replicas, every token issued by either works everywhere', async () => {
    const userPods = await pods(MAIN.namespace, selectorOf(MAIN.name, 'user-service'))
    expect(userPods.filter((p) => p.status.phase === 'Running')).toHaveLength(2)
    const api = client(target.entryUrl, MAIN.routeHost)
    const user = await signUp(api, 'Keys')
    // Logins are balanced over both pods; each token must verify at the gateway and the services.
    const statuses: number[] = []
    for (let i = 0; i < 20; i++) {
      const login = await api('POST', '/auth/token', { body: { email: user.email, password: user.password } })
      expect(login.status).toBe(200)
      statuses.push((await api('GET', '/projects', { token: login.body.access_token })).status)
    }
    expect(
      statuses.filter((s) => s !== 200),
      'requests refused with a token from the other pod',
    ).toEqual([])
    // Both pods published the same key set.
    const jwks = await Promise.all(
      userPods.map((p) =>
        nodeIn(
          MAIN.namespace,
          p.metadata.name,
          'user-service',
          `console.log(JSON.stringify(await (await fetch('http://127.0.0.1:8004/.well-known/jwks.json')).json()))`,
        ),
      ),
    )
    expect(jwks[0].keys.length).toBeGreaterThan(0)
    expect(jwks[1]).toEqual(jwks[0])
  })
})

describe('a route that cannot render (finding 4)', () => {
  test('httpRoute.enabled on a cluster without the Gateway API fails the install and says what to do', async () => {
    // --dry-run=client renders with the capabilities of a cluster that serves no CRDs.
    const result = await helm(
      ['install', 'no-gateway-api', CHART, '-n', MAIN.namespace, '--dry-run=client'],
      { allowFailure: true, timeoutMs: 120_000 },
    )
    expect(result.code).not.toBe(0)
    expect(result.stderr).toContain('does not serve the Gateway API')
    expect(result.stderr).toContain('httpRoute.enabled=false')
  })

  test('on this cluster the defaults (class traefik, listener 8000) give a Gateway that Traefik accepts and programs', async () => {
    // The open release sets neither gatewayClassName nor the port: the chart's defaults.
    const gateway = await kubectlJson(['-n', OPEN.namespace, 'get', 'gateway', `${OPEN.name}-gateway-api`])
    expect(gateway.spec.gatewayClassName).toBe('traefik')
    const conditions = Object.fromEntries(
      (gateway.status?.conditions ?? []).map((c: any) => [c.type, c.status]),
    )
    expect(conditions).toMatchObject({ Accepted: 'True', Programmed: 'True' })
    const route = await kubectlJson(['-n', OPEN.namespace, 'get', 'httproute', `${OPEN.name}-gateway`])
    const parents = route.status?.parents ?? []
    expect(
      parents.flatMap((p: any) =>
        p.conditions.filter((c: any) => c.type === 'Accepted').map((c: any) => c.status),
      ),
    ).toEqual(['True'])
  })
})

describe('databases (finding 6)', () => {
  test("each service connects as its own role: no superuser, owner of its database, refused by the others'", async () => {
    for (const service of DATABASES) {
      const [pod] = await pods(MAIN.namespace, selectorOf(MAIN.name, service))
      const container = service
      // From inside the service's own pod, with its own environment (DATABASE_URL + PGPASSWORD).
      const facts = await nodeIn(
        MAIN.namespace,
        pod!.metadata.name,
        container,
        `import { createRequire } from 'node:module'
         // pg is the service kit's dependency (the image's node_modules is pnpm's: only direct ones at the top).
         const pg = createRequire(import.meta.resolve('@task-manager/service-kit'))('pg')
         const c = new pg.Client({ connectionString: process.env.DATABASE_URL, connectionTimeoutMillis: 10000 })
         await c.connect()
         const r = await c.query("select current_user as role, current_database() as db, r.rolsuper, r.rolcreatedb, r.rolcreaterole, pg_get_userbyid(d.datdba) as owner, (select count(*)::int from pg_roles where rolsuper) as superusers from pg_roles r, pg_database d where r.rolname = current_user and d.datname = current_database()")
         let other = 'connected'
         try { const o = new pg.Client({ connectionString: process.env.DATABASE_URL.replace(/\\/[^/]*$/, '/postgres'), connectionTimeoutMillis: 10000 }); await o.connect(); await o.end() } catch (e) { other = e.code ?? e.message }
         await c.end()
         console.log(JSON.stringify({ ...r.rows[0], other, url: process.env.DATABASE_URL }))`,
      )
      const role = service.replace(/-/g, '_')
      expect(facts).toMatchObject({
        role,
        db: role,
        owner: role,
        rolsuper: false,
        rolcreatedb: false,
        rolcreaterole: false,
      })
      // The password is not in the URL; the postgres database is closed to the role (42501: no CONNECT).
      expect(facts.url).not.toMatch(/:[^/@]*@/)
      expect(facts.other).toBe('42501')
    }
  })

  test('passwords full of URL delimiters work (the open release brings them in its own Secrets)', async () => {
    for (const service of DATABASES) {
      const [pod] = await pods(OPEN.namespace, selectorOf(OPEN.name, service))
      expect(
        pod && pod.status.containerStatuses?.every((c) => c.ready),
        `${service} of ${OPEN.name} is ready`,
      ).toBe(true)
      const secret = await kubectlJson([
        '-n',
        OPEN.namespace,
        'get',
        'secret',
        `${OPEN.name}-${service}-awkward-db`,
      ])
      expect(Buffer.from(secret.data.password, 'base64').toString()).toBe(AWKWARD_PASSWORDS[service])
    }
  })

  test('the database is reached through a ClusterIP Service', async () => {
    for (const service of DATABASES) {
      const svc = await kubectlJson([
        '-n',
        MAIN.namespace,
        'get',
        'service',
        `${MAIN.name}-${service}-postgresql`,
      ])
      expect(svc.spec.type).toBe('ClusterIP')
      expect(svc.spec.clusterIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/)
    }
  })
})
