import { type App, HttpProblem, problemResponses } from '@task-manager/service-kit'
import type { FastifyContextConfig, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { TaskRow } from '../db/schema.js'
import type { TaskAccess } from './access.js'
import { changesFrom, effectiveChanges, newTaskFrom } from './bodies.js'
import { requestHash } from './idempotency.js'
import { etagOf, expectedVersions, preconditionFailed } from './preconditions.js'
import { type TaskChanges, type TaskRepository, toTask, type UpdateOutcome } from './repository.js'
import {
  IdempotencyHeaders,
  IfMatchHeaders,
  StatusUpdate,
  Task,
  TaskInput,
  TaskListQuery,
  TaskParams,
  TaskPatch,
} from './schemas.js'

export interface RateLimits {
  enabled: boolean
  readsPerMinute: number
  writesPerMinute: number
  createsPerMinute: number
}

export interface TaskRoutesOptions {
  repository: TaskRepository
  rateLimits: RateLimits
  idempotencyKeyTtlHours: number
  access: TaskAccess
}

const problems = problemResponses

function notFound(id: number): HttpProblem {
  return new HttpProblem(404, `Task ${id} not found`)
}

function sendTask(reply: FastifyReply, row: TaskRow, status = 200) {
  return reply.code(status).header('etag', etagOf(row)).send(toTask(row))
}

function settle(id: number, outcome: UpdateOutcome): TaskRow {
  if (outcome.kind === 'not_found') throw notFound(id)
  if (outcome.kind === 'stale') throw preconditionFailed(id)
  return outcome.task
}

/** URL of the next page: the request's own query with the cursor replaced. */
function nextPageLink(request: FastifyRequest, cursor: string): string {
  const [path, search = ''] = request.url.split('?', 2) as [string, string?]
  const params = new URLSearchParams(search)
  params.set('cursor', cursor)
  return `<${path}?${params.toString()}>; rel="next"`
}

export async function taskRoutes(app: App, options: TaskRoutesOptions) {
  const { repository, rateLimits, access } = options
  const preHandler = app.authenticate

  /** The task, if it exists and the caller may read it; else 404 (the same answer either way). */
  async function readable(request: FastifyRequest, id: number): Promise<TaskRow> {
    const row = await repository.findById(id)
    if (!row || !(await access.canRead(request, row.project_id))) throw notFound(id)
    return row
  }

  /** The task, if the caller may change it (404 when invisible to them, 403 for viewers). */
  async function writable(request: FastifyRequest, id: number): Promise<TaskRow> {
    const row = await repository.findById(id)
    if (!row) throw notFound(id)
    await access.assertCanWrite(request, row.project_id, id)
    return row
  }

  /** Moving a task to another project needs write access there; the assignee must be a member. */
  async function checkTarget(
    request: FastifyRequest,
    current: TaskRow | undefined,
    projectId: number,
    userId: number,
  ) {
    if (!current || current.project_id !== projectId) await access.assertCanWrite(request, projectId)
    if (!current || current.project_id !== projectId || current.user_id !== userId) {
      await access.assertAssignable(request, projectId, userId)
    }
  }
  /**
   * Writes the changes that differ from `current`. None (a patch of ignored fields only, or of the values
   * already stored): nothing is written and the version stays, but `If-Match` still has to match.
   */
  async function applyChanges(
    id: number,
    current: TaskRow,
    changes: TaskChanges,
    versions: number[] | undefined,
  ): Promise<TaskRow> {
    const effective = effectiveChanges(current, changes)
    if (Object.keys(effective).length === 0) {
      if (versions !== undefined && !versions.includes(current.version)) throw preconditionFailed(id)
      return current
    }
    return settle(id, await repository.update(id, effective, versions))
  }

  const limit = (max: number): FastifyContextConfig =>
    rateLimits.enabled ? { rateLimit: { max, timeWindow: '1 minute' } } : {}
  const reads = limit(rateLimits.readsPerMinute)
  const writes = limit(rateLimits.writesPerMinute)
  const creates = limit(rateLimits.createsPerMinute)

  app.addContentTypeParser(
    'application/merge-patch+json',
    { parseAs: 'string' },
    app.getDefaultJsonParser('error', 'error'),
  )

  app.post(
    '/tasks',
    {
      config: creates,
      preHandler,
      schema: {
        summary: 'Create a task',
        description:
          'Send an `Idempotency-Key` header to make retries safe: a repeat returns the first response.',
        tags: ['tasks'],
        headers: IdempotencyHeaders,
        body: TaskInput,
        response: { 201: Task, ...problems(400, 401, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const task = newTaskFrom(request.body, access.assigneeOf(request, request.body.user_id))
      await checkTarget(request, undefined, task.project_id, task.user_id)
      const key = request.headers['idempotency-key']
      if (key === undefined) {
        const row = await repository.create(task)
        return sendTask(reply.header('location', `/tasks/${row.id}`), row, 201)
      }
      const outcome = await repository.createIdempotent(
        task,
        {
          scope: access.scope(request),
          key,
          hash: requestHash(request.body),
          ttlHours: options.idempotencyKeyTtlHours,
        },
        (row) => ({ status: 201, body: toTask(row) }),
      )
      if (outcome.replayed) {
        const body = outcome.response.body as ReturnType<typeof toTask>
        return reply
          .code(outcome.response.status as 201)
          .header('idempotent-replayed', 'true')
          .header('location', `/tasks/${body.id}`)
          .header('etag', etagOf(body))
          .send(body)
      }
      return sendTask(reply.header('location', `/tasks/${outcome.result.id}`), outcome.result, 201)
    },
  )

  app.get(
    '/tasks',
    {
      config: reads,
      preHandler,
      schema: {
        summary: 'List tasks',
        description:
          'A JSON array, one page at a time (keyset pagination). When more rows exist the `Link` header holds the URL of the next page.',
        tags: ['tasks'],
        querystring: TaskListQuery,
        response: { 200: Type.Array(Task), ...problems(401, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const { rows, next } = await repository.list(request.query, await access.visibility(request))
      if (next) reply.header('link', nextPageLink(request, next))
      return rows.map(toTask)
    },
  )

  app.get(
    '/tasks/:id',
    {
      config: reads,
      preHandler,
      schema: {
        summary: 'Get a task',
        tags: ['tasks'],
        params: TaskParams,
        response: { 200: Task, ...problems(401, 404, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      return sendTask(reply, await readable(request, request.params.id))
    },
  )

  app.put(
    '/tasks/:id',
    {
      config: writes,
      preHandler,
      schema: {
        summary: 'Replace a task',
        description: 'Full replacement; omitted optional fields take their defaults. Honours `If-Match`.',
        tags: ['tasks'],
        params: TaskParams,
        headers: IfMatchHeaders,
        body: TaskInput,
        response: { 200: Task, ...problems(400, 401, 403, 404, 412, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const versions = expectedVersions(request.headers['if-match'], id)
      const current = await writable(request, id)
      const replacement = newTaskFrom(request.body, access.assigneeOf(request, request.body.user_id))
      await checkTarget(request, current, replacement.project_id, replacement.user_id)
      const outcome = await repository.update(id, replacement, versions)
      return sendTask(reply, settle(id, outcome))
    },
  )

  app.patch(
    '/tasks/:id',
    {
      config: writes,
      preHandler,
      schema: {
        summary: 'Update some fields of a task',
        description: 'JSON merge patch (RFC 7396). Honours `If-Match`.',
        tags: ['tasks'],
        params: TaskParams,
        headers: IfMatchHeaders,
        body: TaskPatch,
        response: { 200: Task, ...problems(400, 401, 403, 404, 412, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const versions = expectedVersions(request.headers['if-match'], id)
      const current = await writable(request, id)
      const changes = changesFrom(request.body)
      await checkTarget(
        request,
        current,
        changes.project_id ?? current.project_id,
        changes.user_id ?? current.user_id,
      )
      return sendTask(reply, await applyChanges(id, current, changes, versions))
    },
  )

  app.patch(
    '/tasks/:id/status',
    {
      config: writes,
      preHandler,
      schema: {
        summary: 'Change the status of a task',
        tags: ['tasks'],
        params: TaskParams,
        headers: IfMatchHeaders,
        body: StatusUpdate,
        response: { 200: Task, ...problems(400, 401, 403, 404, 412, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const versions = expectedVersions(request.headers['if-match'], id)
      const current = await writable(request, id)
      return sendTask(reply, await applyChanges(id, current, { status: request.body.status }, versions))
    },
  )

  app.delete(
    '/tasks/:id',
    {
      config: writes,
      preHandler,
      schema: {
        summary: 'Delete a task',
        tags: ['tasks'],
        params: TaskParams,
        headers: IfMatchHeaders,
        response: { 204: Type.Null(), ...problems(401, 403, 404, 412, 429, 503) },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const versions = expectedVersions(request.headers['if-match'], id)
      await writable(request, id)
      const outcome = await repository.delete(id, versions)
      if (outcome.kind === 'not_found') throw notFound(id)
      if (outcome.kind === 'stale') throw preconditionFailed(id)
      return reply.code(204).send(null)
    },
  )
}
