import type { FastifyInstance, RouteOptions } from 'fastify'
import { Type } from 'typebox'
import { ProblemSchema } from './problem.js'

/**
 * The OpenAPI document of a service, generated from the route schemas it validates with and made to tell the
 * truth about what the kit itself answers: every error is `application/problem+json` (one `Problem` schema),
 * every status a route can answer is listed (the route declares the ones its handler decides — 401, 403, 404,
 * 409, 412 — and the kit adds the ones it decides from the route's facts: 400/413/415 where a body is read, 414
 * where a path parameter is, 422 where anything is validated, 429 where a rate limit is configured, 408/431/500/503
 * everywhere), and request schemas say what is accepted: unknown properties are ignored (removed before the handler
 * runs), so the document does not call them invalid.
 */

/** Set on a hook function (with `documents()`): what the hook adds to the operation of every route it guards. */
export const OPENAPI_FACTS = Symbol.for('task-manager.openapi-facts')

export interface OperationFacts {
  /** Status → description of the problem the hook can answer. */
  responses?: Record<number, string>
  /** The operation's `security` requirement. */
  security?: Array<Record<string, string[]>>
}

/** Marks a hook (a preHandler, say) with what it answers, so every route using it documents that. */
export function documents<T extends object>(hook: T, facts: OperationFacts): T {
  Object.defineProperty(hook, OPENAPI_FACTS, { value: facts })
  return hook
}

export const PROBLEM_MEDIA_TYPE = 'application/problem+json'

/** The descriptions of the statuses the kit adds. */
export const STATUS_DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request: a body that is not valid JSON, a malformed URL or malformed HTTP',
  401: 'Authentication required: no token, or a bad or expired one',
  403: 'The caller may not do this',
  404: 'Not found (or not visible to the caller)',
  408: 'The request did not arrive within the server’s deadline (headers 10 s, the whole request 30 s by default)',
  409: 'Conflicts with the current state',
  412: 'If-Match names no current version of the resource',
  413: 'The body is larger than 1 MiB',
  414: 'A path parameter is longer than this service accepts',
  415: 'The body’s media type is not one this operation reads',
  422: 'A parameter or a body field is invalid; `errors[]` names each one',
  428: 'This operation needs an If-Match header',
  429: 'Too many requests from this client; retry after `Retry-After` seconds',
  431: 'The request headers are too large',
  500: 'An internal error; it has been logged, and the body never carries it',
  502: 'The service behind the gateway answered with something that is not HTTP',
  503: 'Overloaded, or a dependency (the database, another service) is unavailable; retry after `Retry-After` seconds',
  504: 'The service behind the gateway did not answer in time',
}

/** Methods whose bodies Fastify reads (so 400, 413 and 415 can come from the body parser). */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

type Json = Record<string, unknown>

/**
 * A request schema as the validator applies it: without `additionalProperties: false` (unknown properties are
 * removed, not refused) and without the properties that have a `default` among the required ones (the validator
 * fills them in when they are absent).
 */
export function acceptingUnknownProperties<T>(schema: T): T {
  if (Array.isArray(schema)) return schema.map(acceptingUnknownProperties) as T
  if (schema === null || typeof schema !== 'object') return schema
  const copy: Json = {}
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'additionalProperties' && value === false) continue
    copy[key] = acceptingUnknownProperties(value)
  }
  const properties = copy.properties as Record<string, { default?: unknown }> | undefined
  if (properties && Array.isArray(copy.required)) {
    const required = (copy.required as string[]).filter((name) => properties[name]?.default === undefined)
    if (required.length > 0) copy.required = required
    else delete copy.required
  }
  return copy as T
}

function hooksOf(route: RouteOptions): unknown[] {
  const hooks: unknown[] = []
  for (const name of ['onRequest', 'preParsing', 'preValidation', 'preHandler'] as const) {
    const value = route[name]
    if (Array.isArray(value)) hooks.push(...value)
    else if (value) hooks.push(value)
  }
  return hooks
}

/** Every status the kit itself can answer on this route, with the statuses its hooks declare. */
export function kitStatuses(
  route: RouteOptions,
  schema: Json,
): { codes: Set<number>; facts: OperationFacts[] } {
  const codes = new Set<number>([400, 408, 431, 500, 503])
  const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) => String(m))
  if (schema.body || methods.some((method) => BODY_METHODS.has(method))) {
    codes.add(413)
    codes.add(415)
  }
  if (schema.params || /[:*]/.test(route.url)) codes.add(414)
  if (schema.body || schema.params || schema.querystring || schema.headers) codes.add(422)
  if ((route.config as { rateLimit?: unknown } | undefined)?.rateLimit) codes.add(429)
  const facts: OperationFacts[] = []
  for (const hook of hooksOf(route)) {
    const declared = (hook as { [OPENAPI_FACTS]?: OperationFacts } | null)?.[OPENAPI_FACTS]
    if (!declared) continue
    facts.push(declared)
    for (const code of Object.keys(declared.responses ?? {})) codes.add(Number(code))
  }
  return { codes, facts }
}

const problemResponse = (status: number, description?: string) => ({
  ...ProblemSchema,
  description: description ?? STATUS_DESCRIPTIONS[status] ?? 'Error',
})

export interface OpenApiTransformOptions {
  /** Routes left out of the document (besides those whose schema says `hide`). */
  hide?: (route: RouteOptions) => boolean
  /** What `/openapi.json` serves instead of the app's own document (the gateway's composed one). */
  serve?: (own: Json) => Promise<Json>
}

/** @fastify/swagger's per-route `transform`: the kit's statuses, security and lenient request schemas. */
export function routeTransform(options: OpenApiTransformOptions = {}) {
  return ({ schema, url, route }: { schema: Json; url: string; route: RouteOptions }) => {
    if (!schema || schema.hide || options.hide?.(route)) return { schema: { ...schema, hide: true }, url }
    const out: Json = { ...schema }
    for (const part of ['body', 'querystring', 'params', 'headers']) {
      if (out[part]) out[part] = acceptingUnknownProperties(out[part])
    }
    const responses: Json = { ...((out.response as Json | undefined) ?? {}) }
    for (const [code, response] of Object.entries(responses)) {
      // The kit's generic Problem schema gets the description of its status.
      if (response === ProblemSchema) responses[code] = problemResponse(Number(code))
    }
    const { codes, facts } = kitStatuses(route, out)
    for (const fact of facts) {
      for (const [code, description] of Object.entries(fact.responses ?? {})) {
        responses[code] ??= problemResponse(Number(code), description)
      }
      if (fact.security) out.security = fact.security
    }
    for (const code of codes) responses[code] ??= problemResponse(code)
    out.response = responses
    return { schema: out, url }
  }
}

/** The Problem schema as the document's component (the errors[] of validation problems included). */
export const ProblemComponent = Type.Object(
  {
    type: Type.String({
      description: 'A URI naming the kind of problem (`about:blank` when the status says it all)',
    }),
    title: Type.String(),
    status: Type.Integer({ minimum: 400, maximum: 599 }),
    detail: Type.String({ description: 'What went wrong, for a human' }),
    instance: Type.Optional(Type.String({ description: 'The request path' })),
    errors: Type.Optional(
      Type.Array(
        Type.Object({
          in: Type.String({ description: 'body, querystring, params or headers' }),
          field: Type.String({ description: 'Dotted path of the field, e.g. `tags.3`' }),
          message: Type.String(),
        }),
        { description: 'Every invalid field (422)' },
      ),
    ),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details' },
)

const RETRY_AFTER = {
  description: 'Seconds to wait before retrying',
  schema: { type: 'integer', minimum: 0 },
}

type Operation = { responses?: Record<string, Json> }

/**
 * @fastify/swagger's `transformObject`: every 4xx/5xx answer is documented as `application/problem+json` with
 * the shared `Problem` component (added to the components), and 204s have no body.
 */
export function documentTransform({ openapiObject }: { openapiObject: Json }): Json {
  const doc = openapiObject as Json & {
    paths?: Record<string, Record<string, Operation>>
    components?: Json & { schemas?: Json }
  }
  for (const item of Object.values(doc.paths ?? {})) {
    for (const operation of Object.values(item)) {
      if (!operation || typeof operation !== 'object' || !operation.responses) continue
      for (const [code, response] of Object.entries(operation.responses)) {
        const status = Number(code)
        if (status === 204 || status === 304) {
          delete response.content
        } else if (status >= 400) {
          response.content = {
            [PROBLEM_MEDIA_TYPE]: { schema: { $ref: '#/components/schemas/Problem' } },
          }
          if (status === 429 || status === 503) response.headers = { 'Retry-After': RETRY_AFTER }
        }
      }
    }
  }
  doc.components = {
    ...doc.components,
    schemas: { ...doc.components?.schemas, Problem: ProblemComponent },
  }
  return doc
}

/** The security scheme of every operation that needs a caller (the kit's `authenticate` documents it). */
export const SECURITY_SCHEMES = {
  bearerAuth: {
    type: 'http' as const,
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'An access token from `POST /auth/token` (EdDSA-signed, 15 minutes)',
  },
}

/** What the document says about the answers that belong to no operation. */
export const DOCUMENT_CONVENTIONS = [
  'Every error is RFC 9457 `application/problem+json` (the `Problem` schema).',
  'A method a path does not declare answers 405 with an `Allow` header naming the ones it does;',
  'an unknown path answers 404; HEAD is answered wherever GET is.',
  'Unknown body and query properties are ignored (removed before the request is handled).',
].join(' ')

/** The document of `app` as a value (what `/openapi.json` serves). */
export function openApiDocument(app: FastifyInstance): Json {
  return app.swagger() as unknown as Json
}
