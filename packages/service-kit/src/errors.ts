import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import FindMyWay from 'find-my-way'
import { isDatabaseUnavailable } from './db.js'
import { patternMessage, WELL_FORMED_KEYWORD, WELL_FORMED_MESSAGE } from './input.js'
import { type FieldError, HttpProblem, problemType, sendProblem } from './problem.js'

/** The part of an Ajv error the kit reads (request validation here, the environment in config.ts). */
export interface AjvError {
  instancePath: string
  keyword?: string
  message?: string
  params?: Record<string, unknown>
}

function fieldErrors(error: FastifyError): FieldError[] {
  const where = error.validationContext ?? 'body'
  return (error.validation as AjvError[]).map((issue) => {
    const segments = issue.instancePath.split('/').filter(Boolean)
    const missing = issue.params?.missingProperty
    if (typeof missing === 'string') segments.push(missing)
    const extra = issue.params?.additionalProperty
    if (typeof extra === 'string') segments.push(extra)
    const message =
      (issue.keyword === 'pattern' && patternMessage(issue.params?.pattern)) ||
      (issue.keyword === WELL_FORMED_KEYWORD && WELL_FORMED_MESSAGE) ||
      // `not: {}` (TypeBox's Never) on a property: one that must not be sent.
      (issue.keyword === 'not' && 'must not be sent') ||
      issue.message ||
      'is invalid'
    return { in: where, field: segments.join('.'), message }
  })
}

const CLIENT_ERROR_CODES: Record<string, number> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 400,
  FST_ERR_CTP_EMPTY_JSON_BODY: 400,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 400,
  FST_ERR_CTP_BODY_TOO_LARGE: 413,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 415,
  FST_ERR_CTP_INVALID_TYPE: 415,
}

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

/**
 * One error handler for the whole service: every error leaves as RFC 9457 problem+json.
 * 4xx keep their message (it is about the client's request); 5xx are logged with context and answer a
 * fixed text, so no internals leak. Unknown paths get 404, known paths with the wrong method 405 + Allow.
 */
export const errorsPlugin = fp(
  async (app: FastifyInstance) => {
    // A second router holding every route lets the 404 handler tell "no such path" from "wrong method".
    const known = FindMyWay({ ignoreTrailingSlash: app.initialConfig.ignoreTrailingSlash ?? false })
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method]
      for (const method of methods) {
        if (method === 'HEAD' || method === 'OPTIONS') continue
        try {
          known.on(method as 'GET', route.url, () => {})
        } catch {
          // already registered (prefix variants): nothing to add
        }
      }
    })

    const notFound = (request: FastifyRequest, reply: FastifyReply) => {
      const path = request.url.split('?')[0] ?? '/'
      const allowed = METHODS.filter((method) => known.find(method, path) !== null)
      if (allowed.length > 0 && !allowed.includes(request.method as (typeof METHODS)[number])) {
        if (allowed.includes('GET')) allowed.push('HEAD' as never)
        return sendProblem(reply, 405, `Method ${request.method} is not allowed on ${path}`, {
          headers: { allow: allowed.join(', ') },
        })
      }
      return sendProblem(reply, 404, `No route ${request.method} ${path}`)
    }
    app.setNotFoundHandler(notFound)

    app.setErrorHandler((error: FastifyError | HttpProblem, request, reply) => {
      if (error instanceof HttpProblem) {
        if (error.status >= 500) request.log.warn({ err: error }, error.detail)
        return sendProblem(reply, error.status, error.detail, error.options)
      }
      if (error.validation) {
        const errors = fieldErrors(error)
        const first = errors[0]
        const detail = first
          ? `Invalid ${first.in}${first.field ? ` field '${first.field}'` : ''}: ${first.message}`
          : 'Request validation failed'
        return sendProblem(reply, 422, detail, { type: problemType('validation-failed'), errors })
      }
      if (isDatabaseUnavailable(error)) {
        request.log.error({ err: error }, 'database unavailable')
        return sendProblem(reply, 503, 'The service’s database is unavailable; retry shortly', {
          type: problemType('dependency-unavailable'),
          headers: { 'retry-after': 1 },
        })
      }
      if ((error as { code?: unknown }).code === '57014') {
        // A statement past its statement_timeout: the request's cost bound, not a fault.
        request.log.warn({ err: error }, 'query cancelled by its statement timeout')
        return sendProblem(reply, 503, 'The query took longer than this service allows; narrow it or retry', {
          type: problemType('query-timeout'),
          headers: { 'retry-after': 1 },
        })
      }
      const status = (error.code && CLIENT_ERROR_CODES[error.code]) || error.statusCode || 500
      // A request no route takes whose body could not be read (a QUERY without a content type, say): what
      // matters is that no route takes it, so it gets the 404 or 405 it would have had without a body.
      if (request.is404 && status < 500) return notFound(request, reply)
      if (status >= 500) {
        request.log.error({ err: error }, 'unhandled error')
        return sendProblem(reply, status, 'An internal error occurred; it has been logged')
      }
      if (status === 429) {
        return sendProblem(reply, 429, error.message, { type: problemType('rate-limited') })
      }
      return sendProblem(reply, status, error.message)
    })
  },
  { name: 'task-manager-errors', fastify: '5.x' },
)
