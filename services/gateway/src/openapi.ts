import { documentTransform, HttpProblem, problemType, STATUS_DESCRIPTIONS } from '@task-manager/service-kit'
import type { ServiceBackend } from './backend.js'
import { passesWithoutToken } from './edge.js'
import type { ProxyRoute } from './proxy-routes.js'

type Json = Record<string, unknown>
type Operation = Json & { responses?: Record<string, Json>; security?: unknown }

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace']

/** Statuses the gateway itself can answer on every proxied operation, whatever the service behind it says. */
const GATEWAY_STATUSES = [400, 408, 429, 431, 500, 502, 503, 504]
const BODY_METHODS = new Set(['post', 'put', 'patch', 'delete'])

export interface GatewayDocumentOptions {
  routes: ProxyRoute[]
  /** Whether the gateway checks tokens itself (AUTH_MODE=required): then non-public routes can answer 401. */
  checksTokens: boolean
  timeoutMs: number
  /** How long a composed document is served before the services are asked again. */
  cacheMs?: number
}

function exposes(route: ProxyRoute, path: string): boolean {
  if (route.exact) return path === route.prefix
  return path === route.prefix || path.startsWith(`${route.prefix}/`)
}

/** Every `$ref` to `#/components/schemas/<from>` in `value` pointed at `<to>` instead. */
function renameRefs(value: unknown, from: string, to: string): unknown {
  if (Array.isArray(value)) return value.map((item) => renameRefs(item, from, to))
  if (value === null || typeof value !== 'object') return value
  const out: Json = {}
  for (const [key, item] of Object.entries(value)) {
    out[key] =
      key === '$ref' && item === `#/components/schemas/${from}`
        ? `#/components/schemas/${to}`
        : renameRefs(item, from, to)
  }
  return out
}

const problem = (status: number) => ({ description: STATUS_DESCRIPTIONS[status] ?? 'Error' })

/**
 * The gateway's OpenAPI document: its own routes (`/`, `/health`) and, for every path a service documents and
 * the gateway routes to it, the service's operation as the service states it (fetched from its `/openapi.json`,
 * so the document is always the running services' own), plus what the gateway answers itself: 401 where it
 * checks the token, 429 (rate limits, requests in flight), 502/503/504 when the service fails, and the request
 * limits of any Fastify server. Paths the gateway does not route (a service's internal endpoints) are left out.
 */
export function composeDocument(
  own: Json,
  services: Array<{ backend: ServiceBackend; document: Json }>,
  options: Pick<GatewayDocumentOptions, 'routes' | 'checksTokens'>,
): Json {
  const paths: Record<string, Json> = { ...(own.paths as Record<string, Json> | undefined) }
  const ownComponents = (own.components ?? {}) as Json & { schemas?: Json }
  const schemas: Json = { ...ownComponents.schemas }
  for (const operations of Object.values(paths)) {
    for (const method of METHODS) {
      const operation = operations[method] as Operation | undefined
      if (operation?.responses) operation.responses['429'] ??= problem(429)
    }
  }
  for (const { backend, document } of services) {
    let doc = document as Json & { paths?: Record<string, Json>; components?: { schemas?: Json } }
    // Components of the same name and content (the kit's Problem) are shared; different ones get the service's
    // name in front.
    for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) {
      if (schemas[name] === undefined || JSON.stringify(schemas[name]) === JSON.stringify(schema)) {
        schemas[name] = schema
        continue
      }
      const renamed = `${backend.name}.${name}`
      doc = renameRefs(doc, name, renamed) as typeof doc
      schemas[renamed] = schema
    }
    const routes = options.routes.filter((route) => route.backend === backend)
    for (const [path, item] of Object.entries(doc.paths ?? {})) {
      if (!routes.some((route) => exposes(route, path))) continue
      const operations: Json = { ...item }
      for (const method of METHODS) {
        const operation = operations[method] as Operation | undefined
        if (!operation) continue
        const responses = { ...operation.responses }
        for (const status of GATEWAY_STATUSES) responses[status] ??= problem(status)
        if (BODY_METHODS.has(method)) responses['413'] ??= problem(413)
        if (
          options.checksTokens &&
          !passesWithoutToken(method.toUpperCase(), path.replace(/\{[^}]+\}/g, '1'))
        ) {
          responses['401'] ??= problem(401)
          operation.security ??= [{ bearerAuth: [] }]
        }
        operations[method] = { ...operation, responses }
      }
      paths[path] = operations
    }
  }
  return documentTransform({
    openapiObject: { ...own, paths, components: { ...ownComponents, schemas } },
  })
}

/** `/openapi.json` of the gateway: the composed document, cached for `cacheMs`; 503 while a service cannot say. */
export function gatewayDocument(
  backends: ServiceBackend[],
  options: GatewayDocumentOptions,
): (own: Json) => Promise<Json> {
  let cached: { at: number; document: Json } | undefined
  return async (own) => {
    const now = Date.now()
    if (cached && now - cached.at < (options.cacheMs ?? 10_000)) return cached.document
    const services = await Promise.all(
      backends.map(async (backend) => {
        try {
          return { backend, document: await backend.document(options.timeoutMs) }
        } catch (error) {
          throw new HttpProblem(
            503,
            `The API document of ${backend.name} is unavailable (${(error as Error).message}); retry shortly`,
            { type: problemType('dependency-unavailable'), headers: { 'retry-after': 5 } },
          )
        }
      }),
    )
    const document = composeDocument(own, services, options)
    cached = { at: now, document }
    return document
  }
}
