import { STATUS_CODES } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

export interface FieldError {
  /** Where the bad value was: body, querystring, params or headers. */
  in: string
  /** Dotted path of the field inside that part, e.g. `tags.3`; empty for the part as a whole. */
  field: string
  message: string
}

/** An RFC 9457 problem details document. */
export interface ProblemDocument {
  type: string
  title: string
  status: number
  detail: string
  instance?: string
  errors?: FieldError[]
  [extension: string]: unknown
}

export interface ProblemOptions {
  /** A URI naming the kind of problem; `about:blank` when the status says it all. */
  type?: string
  title?: string
  headers?: Record<string, string | number>
  errors?: FieldError[]
  extensions?: Record<string, unknown>
}

/**
 * Thrown from handlers to answer with a problem document. Anything else thrown is a 500 whose body
 * never carries the error's message.
 */
export class HttpProblem extends Error {
  readonly status: number
  readonly detail: string
  readonly options: ProblemOptions

  constructor(status: number, detail: string, options: ProblemOptions = {}) {
    super(detail)
    this.name = 'HttpProblem'
    this.status = status
    this.detail = detail
    this.options = options
  }
}

export const problemType = (slug: string) => `urn:task-manager:problem:${slug}`

/** The document for a request URL (its path becomes `instance`). */
export function problemFor(status: number, detail: string, url: string, options: ProblemOptions = {}) {
  const query = url.indexOf('?')
  const doc: ProblemDocument = {
    type: options.type ?? 'about:blank',
    title: options.title ?? STATUS_CODES[status] ?? 'Error',
    status,
    detail,
    instance: query === -1 ? url : url.slice(0, query),
    ...options.extensions,
  }
  if (options.errors) doc.errors = options.errors
  return doc
}

export function problemDocument(
  status: number,
  detail: string,
  request: FastifyRequest,
  options: ProblemOptions = {},
) {
  return problemFor(status, detail, request.url, options)
}

export function sendProblem(
  reply: FastifyReply,
  status: number,
  detail: string,
  options: ProblemOptions = {},
): FastifyReply {
  for (const [name, value] of Object.entries(options.headers ?? {})) reply.header(name, value)
  return reply
    .code(status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(JSON.stringify(problemDocument(status, detail, reply.request, options)))
}

/** The problem document as a response schema, for route schemas and the OpenAPI document. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.Optional(Type.String()),
  },
  { additionalProperties: true, description: 'RFC 9457 problem details (application/problem+json)' },
)

/** `response` schema entries for the problem statuses a route can answer, e.g. `...problemResponses(404, 422)`. */
export function problemResponses(...codes: number[]): Record<number, typeof ProblemSchema> {
  return Object.fromEntries(codes.map((code) => [code, ProblemSchema]))
}
