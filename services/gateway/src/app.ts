import cors from '@fastify/cors'
import { TokenRevocations, type Verifier, verifierFromConfig } from '@task-manager/auth'
import { setUpServiceEvents } from '@task-manager/events'
import { type App, optionalRedis, serviceIdentity, serviceKit } from '@task-manager/service-kit'
import fp from 'fastify-plugin'
import { ServiceBackend } from './backend.js'
import type { GatewayConfig } from './config.js'
import { edgePlugin } from './edge.js'
import { healthRoutes } from './health-routes.js'
import { gatewayMetrics } from './metrics.js'
import { gatewayDocument } from './openapi.js'
import { type ProxyRoute, proxyRoutes } from './proxy-routes.js'
import { webApp } from './web.js'

export const identity = serviceIdentity(
  'gateway',
  'API gateway of the Task Manager: the one entry point for clients',
)

export interface GatewayAppOptions {
  config: GatewayConfig
  /** Overrides the verifier built from JWKS_URL (tests give a local key set). */
  verifier?: Verifier | null
}

const CORS_ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'if-match',
  'if-none-match',
  'idempotency-key',
  'traceparent',
  'tracestate',
  'x-request-id',
]
const CORS_EXPOSED_HEADERS = [
  'etag',
  'location',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'x-request-id',
]

/**
 * The gateway as a plugin: server.ts runs it, tests register it on their own instance. Not encapsulated
 * (fastify-plugin): the kit's decorations, `readiness` among them, must be on the root instance that
 * runService drains on shutdown.
 */
async function gatewayApp(app: App, { config, verifier }: GatewayAppOptions) {
  // CORS first: its hook answers preflights before auth or rate limits see them, and every answer
  // (401, 429, 503 included) carries the CORS headers a browser needs to read it.
  const origins = config.CORS_ORIGINS.split(',')
    .map((origin) => origin.trim())
    .filter(Boolean)
  await app.register(cors, {
    origin: origins.includes('*') ? '*' : origins,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: config.CORS_MAX_AGE_SECONDS,
    strictPreflight: true,
  })

  // `/openapi.json` serves the document composed from the services' own (set once the backends exist).
  let document: ((own: Record<string, unknown>) => Promise<Record<string, unknown>>) | undefined
  await app.register(serviceKit, {
    ...identity,
    maxEventLoopDelayMs: config.MAX_EVENT_LOOP_DELAY_MS,
    healthRoute: false,
    openapi: {
      // The proxied routes are documented by the services behind them.
      hide: (route) => (route.config as { upstream?: string } | undefined)?.upstream !== undefined,
      serve: async (own) => (document ? document(own) : own),
    },
  })

  // Draining: clients keep connections alive (an ingress keeps a pool to every pod), and such a connection would
  // hold the process open until the shutdown grace period runs out. Once shutdown has begun, every answer closes
  // its connection, so clients move to other replicas and the server can finish.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (app.readiness.shuttingDown) reply.header('connection', 'close')
    done(null, payload)
  })

  const log = app.log
  const metrics = gatewayMetrics(app.metrics.registry, () => backends)
  const backend = (name: string, url: string) =>
    new ServiceBackend({
      name,
      url,
      discovery: config.DISCOVERY_MODE,
      dnsServers: config.DNS_SERVERS.split(',')
        .map((server) => server.trim())
        .filter(Boolean),
      dnsRefreshMs: config.DNS_REFRESH_MS,
      ejectAfterFailures: config.EJECT_AFTER_FAILURES,
      ejectForMs: config.EJECT_FOR_MS,
      connectTimeoutMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
      timeoutMs,
      connections: config.UPSTREAM_CONNECTIONS,
      breakerVolumeThreshold: config.BREAKER_FAILURE_THRESHOLD,
      breakerErrorPercentage: config.BREAKER_ERROR_PERCENTAGE,
      breakerResetMs: config.BREAKER_RESET_MS,
      retryBudgetRatio: config.RETRY_BUDGET_RATIO,
      retryBudgetMinPerSecond: config.RETRY_BUDGET_MIN_PER_SECOND,
      circuitGauge: metrics.circuitState,
      log,
    })
  const timeoutMs = { default: config.UPSTREAM_RESPONSE_TIMEOUT_MS, login: config.LOGIN_RESPONSE_TIMEOUT_MS }
  const tasks = backend('task-service', config.TASK_SERVICE_URL)
  const users = backend('user-service', config.USER_SERVICE_URL)
  const projects = backend('project-service', config.PROJECT_SERVICE_URL)
  const backends = [tasks, users, projects]
  await Promise.all(backends.map((each) => each.start()))
  app.addHook('onClose', async () => {
    await Promise.all(backends.map((each) => each.close()))
  })
  // A new gateway pod takes traffic only once it has reached every service (any answer counts): in a
  // cluster its connections may be refused for a moment after it starts, until the NetworkPolicy
  // controller has programmed the pod, and a request it took then would fail. A one-time gate, bounded:
  // after STARTUP_UPSTREAM_WAIT_MS it opens anyway, and once open readiness never looks at the services
  // again (a service's outage must not take every gateway out of its Service).
  const startedAt = Date.now()
  let reachedAll = config.STARTUP_UPSTREAM_WAIT_MS === 0
  app.readiness.addCheck('services-reached', async () => {
    if (reachedAll) return
    const states = await Promise.all(backends.map((each) => each.ready({}, 900)))
    if (states.every((state) => state !== 'unreachable')) reachedAll = true
    else if (Date.now() - startedAt >= config.STARTUP_UPSTREAM_WAIT_MS) {
      reachedAll = true
      app.log.warn(
        { unreachable: backends.filter((_, i) => states[i] === 'unreachable').map((each) => each.name) },
        'ready although some services were not reached within STARTUP_UPSTREAM_WAIT_MS',
      )
    } else
      throw new Error(
        `not reached yet: ${backends.filter((_, i) => states[i] === 'unreachable').map((each) => each.name)}`,
      )
  })

  // Revoked tokens are refused at the edge too, cached verdicts included: every gateway replica follows
  // users.user.tokens_revoked / users.user.deleted into its own list (docs/events.md, "Token revocation").
  const revocations = new TokenRevocations()
  const edgeVerifier =
    config.AUTH_MODE === 'disabled'
      ? null
      : verifier !== undefined
        ? verifier
        : verifierFromConfig(
            {
              ...config,
              JWKS_URL:
                config.JWKS_URL ?? `${config.USER_SERVICE_URL.replace(/\/$/, '')}/.well-known/jwks.json`,
            },
            { revocations },
          )
  if (edgeVerifier !== null) setUpServiceEvents(app, { service: identity.service, config, revocations })

  await app.register(edgePlugin, {
    verifier: edgeVerifier,
    metrics,
    maxInFlightPerClient: config.MAX_IN_FLIGHT_PER_CLIENT,
    rateLimits: config.RATE_LIMIT_ENABLED
      ? {
          perMinute: {
            reads: config.RATE_LIMIT_READS_PER_MINUTE,
            writes: config.RATE_LIMIT_WRITES_PER_MINUTE,
            creates: config.RATE_LIMIT_CREATES_PER_MINUTE,
            login: config.RATE_LIMIT_LOGIN_PER_MINUTE,
          },
          windowMs: config.RATE_LIMIT_WINDOW_MS,
          redis: optionalRedis(app, config.REDIS_URL, 'rate-limit store'),
        }
      : null,
  })

  await app.register(healthRoutes, {
    version: identity.version,
    upstreams: { tasks, users, projects },
    timeoutMs: config.HEALTH_TIMEOUT_MS,
  })
  await app.register(webApp, { root: config.WEB_ROOT })

  const routes: ProxyRoute[] = [
    { prefix: '/tasks', backend: tasks },
    { prefix: '/projects', backend: projects },
    { prefix: '/users', backend: users },
    { prefix: '/auth', backend: users },
    { prefix: '/.well-known/jwks.json', backend: users, exact: true },
  ]
  await app.register(proxyRoutes, { metrics, retryAttempts: config.RETRY_ATTEMPTS, timeoutMs, routes })
  document = gatewayDocument(backends, {
    routes,
    checksTokens: edgeVerifier !== null,
    timeoutMs: config.HEALTH_TIMEOUT_MS,
  })
}

export default fp(gatewayApp, { name: 'gateway', fastify: '5.x' })
