import { createServer as createHttpServer, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import swagger from '@fastify/swagger'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import underPressure from '@fastify/under-pressure'
import closeWithGrace from 'close-with-grace'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyPluginOptions,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify'
import fp from 'fastify-plugin'
import type { BaseConfig } from './config.js'
import { errorsPlugin } from './errors.js'
import { healthPlugin } from './health.js'
import { buildValidator, integerFormsPlugin, wellFormedKeyword } from './input.js'
import { loggerOptions, requestIdFrom } from './logger.js'
import { metricsPlugin } from './metrics.js'
import {
  DOCUMENT_CONVENTIONS,
  documentTransform,
  type OpenApiTransformOptions,
  routeTransform,
  SECURITY_SCHEMES,
} from './openapi.js'
import { PROBLEM_CONTENT_TYPE, problemFor, problemType, sendProblem } from './problem.js'
import {
  bindRequestSpan,
  injectUnsampledTraceContext,
  shutdownTracing,
  tracingActive,
  withRequestSpan,
} from './telemetry.js'

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>

export const BODY_LIMIT_BYTES = 1024 * 1024

/** The part of the config the Fastify server itself needs. */
export interface ServerSettings {
  LOG_LEVEL: BaseConfig['LOG_LEVEL']
  TRUST_PROXY?: string
  /** A request's headers must all arrive within this (default 10 s), else 408. */
  REQUEST_HEADERS_TIMEOUT_MS?: number
  /** A whole request, body included, must arrive within this (default 30 s), else 408. */
  REQUEST_TIMEOUT_MS?: number
  /** `/metrics` on this port of its own (HOST's interface) instead of the service port; 0 = the service port. */
  METRICS_PORT?: number
  HOST?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The settings the server was created with (the kit's plugins read theirs, e.g. METRICS_PORT). */
    serverSettings: ServerSettings
  }
}

/**
 * Answers what Node's HTTP parser refuses before Fastify sees a request (a malformed request line or header,
 * headers or a body that did not arrive in time) with problem+json and closes the connection, as Fastify's
 * default handler does with its own JSON shape.
 */
function clientErrorHandler(this: FastifyInstance, error: Error & { code?: string }, socket: Socket) {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const status =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
  const detail =
    status === 408
      ? 'The request did not arrive in time'
      : status === 431
        ? 'The request headers are too large'
        : 'The request is not valid HTTP/1.1'
  this.log.debug({ err: error }, 'client error')
  if (
    socket.writable &&
    !(socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent
  ) {
    const body = JSON.stringify(problemFor(status, detail, '/', { type: problemType('bad-request') }))
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(error)
}

export interface ServiceIdentity {
  /** e.g. `task-service`; the `service` label on logs and metrics. */
  service: string
  version: string
  description?: string
}

/**
 * A service's identity: its name, the version its package script runs it with (`npm_package_version`; 0.1.0 in an
 * image, which runs `node` directly) and what it does (the OpenAPI document's description).
 */
export function serviceIdentity(service: string, description: string): ServiceIdentity {
  return { service, version: process.env.npm_package_version ?? '0.1.0', description }
}

/** Fastify options every service runs with. */
export function serverOptions(identity: ServiceIdentity, config: ServerSettings): FastifyServerOptions {
  const trustProxy = config.TRUST_PROXY ?? 'loopback'
  return {
    trustProxy: trustProxy === 'false' ? false : trustProxy,
    logger: loggerOptions(identity.service, config.LOG_LEVEL),
    genReqId: requestIdFrom,
    requestIdHeader: false,
    // One log line per request, written by the service kit's onResponse hook.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: BODY_LIMIT_BYTES,
    // A `__proto__` key in a JSON body is removed like any other unknown property (the default refuses the whole
    // body with a 400 the document cannot describe); either way it never reaches an object's prototype.
    onProtoPoisoning: 'remove',
    // Requests still arriving on open connections while closing are served (with Connection: close)
    // rather than refused with Fastify's non-problem 503: nothing that reached the service fails.
    return503OnClosing: false,
    clientErrorHandler,
    routerOptions: { ignoreTrailingSlash: true },
    // Errors of the router itself (a malformed URL: 400, a path parameter past maxParamLength: 414)
    // leave as problem+json too, like every other error.
    frameworkErrors: (error, _request, reply) => {
      const status = (error as { statusCode?: number }).statusCode ?? 400
      const detail =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? 'A path parameter is longer than this service accepts'
          : 'The request URL is malformed'
      sendProblem(reply, status, detail)
    },
    ajv: {
      customOptions: {
        removeAdditional: true,
        coerceTypes: 'array',
        useDefaults: true,
        allErrors: true,
        keywords: [wellFormedKeyword],
      },
    },
    schemaController: { compilersFactory: { buildValidator: buildValidator() } },
  }
}

/**
 * The Fastify instance of a service. Its node:http server has deadlines on what a client sends: headers within
 * REQUEST_HEADERS_TIMEOUT_MS, the whole request within REQUEST_TIMEOUT_MS (else 408 problem+json and the
 * connection closes), checked every second rather than Node's default 30 s, so a slow client cannot hold a
 * request open for long.
 */
export function createServer(identity: ServiceIdentity, config: ServerSettings): App {
  const requestTimeout = config.REQUEST_TIMEOUT_MS ?? 30_000
  const headersTimeout = Math.min(config.REQUEST_HEADERS_TIMEOUT_MS ?? 10_000, requestTimeout)
  const app = Fastify({
    ...serverOptions(identity, config),
    // Fastify's documented way to pass node:http options it does not expose itself.
    serverFactory: (handler, options) => {
      const server = createHttpServer(
        {
          headersTimeout,
          requestTimeout,
          connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(headersTimeout / 2))),
        },
        handler,
      )
      server.keepAliveTimeout = (options as FastifyServerOptions).keepAliveTimeout ?? 72_000
      return server
    },
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.decorate('serverSettings', config)
  return app
}

/**
 * Headers a service passes on when it calls another one, so one request can be followed across pods. With
 * tracing on, the HTTP client instrumentation writes `traceparent`/`tracestate` of the calling span itself in a
 * sampled request, and an unsampled one's context is written here (injectUnsampledTraceContext); off, the
 * caller's own trace context is passed on unchanged.
 */
export function propagationHeaders(request: FastifyRequest): Record<string, string> {
  const headers: Record<string, string> = { 'x-request-id': request.id }
  if (tracingActive()) {
    injectUnsampledTraceContext(headers)
    return headers
  }
  const { traceparent, tracestate } = request.headers
  if (typeof traceparent === 'string') headers.traceparent = traceparent
  if (typeof tracestate === 'string') headers.tracestate = tracestate
  return headers
}

export interface ServiceKitOptions extends ServiceIdentity {
  /** Load shedding threshold; 0 turns it off. */
  maxEventLoopDelayMs?: number
  /** Register the kit's `/health` summary (default true); false when the service answers `/health` itself. */
  healthRoute?: boolean
  /** How the OpenAPI document is made (routes to leave out). */
  openapi?: OpenApiTransformOptions
}

/**
 * Everything a production pod needs, in one registration: request ids, request logs, problem+json
 * errors, health probes, Prometheus metrics, load shedding and the OpenAPI document.
 */
export const serviceKit = fp<ServiceKitOptions>(
  async (app: FastifyInstance, options) => {
    if (tracingActive()) {
      // @fastify/otel's onRequest hook (registered when the server was created) made the request's span
      // current: the request's log lines carry it from here on, whichever async context writes them.
      app.addHook('onRequest', (request, _reply, done) => {
        bindRequestSpan(request.log)
        done()
      })
    }
    app.addHook('onSend', (request, reply, payload, done) => {
      reply.header('x-request-id', request.id)
      // While draining, every response (in flight at SIGTERM or arriving after it) closes its connection,
      // so keep-alive clients reconnect elsewhere instead of holding this process open.
      if (app.readiness.shuttingDown) reply.header('connection', 'close')
      done(null, payload)
    })
    // The access log line goes through a child logger without redaction: its fields are fixed (request id,
    // method, URL, status, duration, client address) and carry nothing the redaction paths name, while pino's redaction with
    // the kit's wildcard paths is most of a line's cost — measured 13–15 µs of CPU per request with it, 4–6 µs
    // without (docs/benchmarks-gateway.md). Every other line keeps the redaction.
    const accessLog = app.log.child({}, { redact: { paths: [] } })
    // That logger is shared, so with tracing on the line names its request's span itself (the server span, as
    // on every other line of the request; the span active at onResponse is the handler's).
    const traced = tracingActive()
    // Callback-style hooks: they run on every request, and a callback costs no promise.
    app.addHook('onResponse', (request, reply, done) => {
      const fields = {
        request_id: request.id,
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        duration_ms: Math.round(reply.elapsedTime * 100) / 100,
        // Who asked: the TCP peer, or what a trusted proxy (TRUST_PROXY) said it was.
        client: request.ip,
      }
      if (traced) withRequestSpan(fields, request.log)
      if (request.routeOptions.config?.probe) accessLog.debug(fields, 'request completed')
      else accessLog.info(fields, 'request completed')
      done()
    })

    await app.register(errorsPlugin)
    await app.register(integerFormsPlugin)
    await app.register(healthPlugin, { service: options.service, healthRoute: options.healthRoute })
    await app.register(metricsPlugin, { service: options.service })

    const maxEventLoopDelay = options.maxEventLoopDelayMs ?? 1000
    if (maxEventLoopDelay > 0) {
      await app.register(underPressure, {
        maxEventLoopDelay,
        retryAfter: 5,
        pressureHandler: (request, reply, type, value) => {
          // Probes and scrapes are never shed: a 503 on /health/live under load would make the kubelet
          // restart a pod for being busy (and move its load onto the others), and metrics would vanish
          // exactly when they matter. Returning nothing lets the request through.
          if (request.routeOptions.config?.probe) return
          request.log.warn({ type, value }, 'shedding load')
          sendProblem(reply, 503, 'The service is overloaded; retry shortly', {
            type: problemType('overloaded'),
            headers: { 'retry-after': 5 },
          })
        },
      })
    }

    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: options.service,
          version: options.version,
          description: [options.description, DOCUMENT_CONVENTIONS].filter(Boolean).join('\n\n'),
        },
        components: { securitySchemes: SECURITY_SCHEMES },
      },
      // Shared schemas keep their $id as their component name (`Task`, not `def-0`).
      refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
      transform: routeTransform(options.openapi) as never,
      transformObject: documentTransform as never,
    })
    const serve = options.openapi?.serve
    app.get('/openapi.json', { schema: { hide: true }, config: { probe: true } }, async () =>
      serve ? serve(app.swagger() as unknown as Record<string, unknown>) : app.swagger(),
    )
  },
  { name: 'task-manager-service-kit', fastify: '5.x' },
)

export interface RunOptions<O extends FastifyPluginOptions> {
  identity: ServiceIdentity
  config: Pick<
    BaseConfig,
    'HOST' | 'PORT' | 'LOG_LEVEL' | 'SHUTDOWN_DELAY_MS' | 'SHUTDOWN_GRACE_MS' | 'AUTH_MODE'
  > &
    Partial<
      Pick<BaseConfig, 'TRUST_PROXY' | 'REQUEST_HEADERS_TIMEOUT_MS' | 'REQUEST_TIMEOUT_MS' | 'METRICS_PORT'>
    >
  /** The service's app plugin (src/app.ts). */
  plugin: FastifyPluginAsync<O>
  pluginOptions: O
}

/**
 * server.ts in one call: builds the server, registers the app, listens, and on SIGTERM/SIGINT drains:
 * readiness turns 503, after SHUTDOWN_DELAY_MS the server stops accepting, in-flight requests finish,
 * onClose hooks close pools; past SHUTDOWN_GRACE_MS the process exits with code 1.
 */
export async function runService<O extends FastifyPluginOptions>({
  identity,
  config,
  plugin,
  pluginOptions,
}: RunOptions<O>): Promise<App> {
  const app = createServer(identity, config)
  if (config.AUTH_MODE === 'disabled') {
    app.log.warn('AUTH_MODE=disabled: authentication and authorization are OFF; never run this in production')
  }
  await app.register(plugin as FastifyPluginAsync, pluginOptions as object)

  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error, shutting down')
    else app.log.info({ signal }, 'shutting down')
    app.readiness.shuttingDown = true
    if (config.SHUTDOWN_DELAY_MS > 0)
      await new Promise((resolve) => setTimeout(resolve, config.SHUTDOWN_DELAY_MS))
    await app.close()
    await shutdownTracing()
    app.log.info('shutdown complete')
  })

  await app.listen({ host: config.HOST, port: config.PORT })
  return app
}
