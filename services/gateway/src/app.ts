import type { OutgoingHttpHeader } from 'node:http'
import cors from '@fastify/cors'
import { bearerTokenOf, type Verifier, verifierFromConfig } from '@task-manager/auth'
import { type App, optionalRedis, problemType, sendProblem, serviceKit } from '@task-manager/service-kit'
import fp from 'fastify-plugin'
import { ClientAddress } from './client-address.js'
import type { GatewayConfig } from './config.js'
import { healthRoutes } from './health-routes.js'
import { gatewayMetrics } from './metrics.js'
import { CorsPolicy, EdgeProxy } from './proxy.js'
import { budgetOf, clientKey, type Decision, RateLimiter, rateLimitHeaders } from './rate-limit.js'
import { Upstream } from './upstream.js'
import { webApp } from './web.js'

export const identity = {
  service: 'gateway',
  version: process.env.npm_package_version ?? '0.1.0',
  description: 'API gateway of the Task Manager: the one entry point for clients',
}

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

  await app.register(serviceKit, {
    ...identity,
    maxEventLoopDelayMs: config.MAX_EVENT_LOOP_DELAY_MS,
    healthRoute: false,
  })

  // Draining: clients keep connections alive (an ingress keeps a pool to every pod), and such a connection would
  // hold the process open until the shutdown grace period runs out. Once shutdown has begun, every answer closes
  // its connection, so clients move to other replicas and the server can finish.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (app.readiness.shuttingDown) reply.header('connection', 'close')
    done(null, payload)
  })

  const log = app.log
  const upstream = (name: string, url: string) =>
    new Upstream({
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
      responseTimeoutMs: config.UPSTREAM_RESPONSE_TIMEOUT_MS,
      connections: config.UPSTREAM_CONNECTIONS,
      breakerFailureThreshold: config.BREAKER_FAILURE_THRESHOLD,
      breakerResetMs: config.BREAKER_RESET_MS,
      retryBudgetRatio: config.RETRY_BUDGET_RATIO,
      retryBudgetMinPerSecond: config.RETRY_BUDGET_MIN_PER_SECOND,
      log,
    })
  const tasks = upstream('task-service', config.TASK_SERVICE_URL)
  const users = upstream('user-service', config.USER_SERVICE_URL)
  const projects = upstream('project-service', config.PROJECT_SERVICE_URL)
  const upstreams = [tasks, users, projects]
  await Promise.all(upstreams.map((each) => each.start()))
  app.addHook('onClose', async () => {
    await Promise.all(upstreams.map((each) => each.close()))
  })

  const metrics = gatewayMetrics(app.metrics.registry, upstreams)

  const edgeVerifier =
    config.AUTH_MODE === 'disabled'
      ? null
      : verifier !== undefined
        ? verifier
        : verifierFromConfig({
            ...config,
            JWKS_URL:
              config.JWKS_URL ?? `${config.USER_SERVICE_URL.replace(/\/$/, '')}/.well-known/jwks.json`,
          })

  const clients = new ClientAddress(config.TRUST_PROXY)
  let limiter: RateLimiter | null = null
  if (config.RATE_LIMIT_ENABLED) {
    const redis = optionalRedis(app, config.REDIS_URL, 'rate-limit store')
    const active = new RateLimiter({
      perMinute: {
        reads: config.RATE_LIMIT_READS_PER_MINUTE,
        writes: config.RATE_LIMIT_WRITES_PER_MINUTE,
        creates: config.RATE_LIMIT_CREATES_PER_MINUTE,
        login: config.RATE_LIMIT_LOGIN_PER_MINUTE,
      },
      windowMs: config.RATE_LIMIT_WINDOW_MS,
      redis,
      onExceeded: (budget) => metrics.rateLimited.inc({ budget }),
      onStoreError: (error) => log.warn({ err: error }, 'rate-limit store failed; request let through'),
    })
    app.addHook('onClose', async () => active.close())
    limiter = active

    // The gateway's own routes other than probes and scrapes (`/`, `/health`, unknown paths) draw from the same
    // budgets as the proxied ones; preflights are answered by CORS before this hook.
    app.addHook('onRequest', (request, reply, done) => {
      if (request.routeOptions.config?.probe || request.method === 'OPTIONS') return done()
      const token = bearerTokenOf(request.headers.authorization)
      const principal = token && edgeVerifier?.peek ? edgeVerifier.peek(token) : undefined
      const client = clientKey(principal, clients, request.raw)
      const decided = (decision: Decision) => {
        const headers: OutgoingHttpHeader[] = []
        rateLimitHeaders(decision, headers)
        for (let i = 0; i < headers.length; i += 2) reply.header(headers[i] as string, headers[i + 1])
        if (decision.allowed) return done()
        sendProblem(reply, 429, active.refusal(decision), { type: problemType('rate-limited') })
      }
      const decision = active.take(budgetOf(request.method, request.url), client)
      if (decision instanceof Promise) decision.then(decided)
      else decided(decision)
    })
  }

  await app.register(healthRoutes, {
    version: identity.version,
    upstreams: { tasks, users, projects },
    timeoutMs: config.HEALTH_TIMEOUT_MS,
  })
  await app.register(webApp, { root: config.WEB_ROOT })

  let closing = false
  app.addHook('onClose', async () => {
    closing = true
  })
  const proxy = new EdgeProxy({
    metrics,
    requestDuration: app.metrics.requestDuration,
    log,
    clients,
    cors: new CorsPolicy(origins, CORS_EXPOSED_HEADERS),
    verifier: edgeVerifier,
    limiter,
    retryAttempts: config.RETRY_ATTEMPTS,
    responseTimeoutMs: config.UPSTREAM_RESPONSE_TIMEOUT_MS,
    draining: () => closing || app.readiness.shuttingDown,
    overloaded: () => app.isOverloaded(),
    routes: [
      { prefix: '/tasks', upstream: tasks },
      { prefix: '/projects', upstream: projects },
      { prefix: '/users', upstream: users },
      { prefix: '/auth', upstream: users },
      { prefix: '/.well-known/jwks.json', upstream: users, exact: true },
    ],
  })
  app.setFrontHandler(proxy.handle)
}

export default fp(gatewayApp, { name: 'gateway', fastify: '5.x' })
