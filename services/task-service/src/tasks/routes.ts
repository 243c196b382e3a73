import {
  type App,
  type FieldError,
  HttpProblem,
  parseDateOrDateTime,
  problemResponses,
  problemType,
} from '@task-manager/service-kit'
import type { FastifyContextConfig, FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { TaskRow } from '../db/schema.js'
import type { TaskAccess } from './access.js'
import { requestHash } from './idempotency.js'
import { etagOf, expectedVersions, preconditionFailed } from './preconditions.js'
import {
  type NewTask,
  type TaskChanges,
  type TaskRepository,
  toTask,
  type UpdateOutcome,
} from './repository.js'
import { stripHtml } from './sanitize.js'
import {
  IdempotencyHeaders,
  IfMatchHeaders,
  StatusUpdate,
  Task,
  type TaskInput,
  TaskInput as TaskInputSchema,
  TaskListQuery,
  TaskParams,
  type TaskPatch,
  TaskPatch as TaskPatchSchema,
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

function invalid(errors: FieldError[]): HttpProblem {
  const first = errors[0] as FieldError
  return new HttpProblem(422, `Invalid body field '${first.field}': ${first.message}`, {
    type: problemType('validation-failed'),
    errors,
  })
}

/** ISO 8601 date or date-time → Date; a date alone is midnight UTC and no offset means UTC. */
export function parseDueDate(value: string | null | undefined): Date | null {
  if (value === null || value === undefined) return null
  const date = parseDateOrDateTime(value)
  if (date === undefined) {
    throw invalid([{ in: 'body', field: 'due_date', message: 'is not an existing date' }])
  }
  return date
}

function cleanTitle(title: string): string {
  const clean = stripHtml(title).trim()
  if (clean.length === 0) {
    throw invalid([{ in: 'body', field: 'title', message: 'must not be empty once HTML is removed' }])
  }
  return clean
}

function cleanTags(tags: string[]): string[] {
  return tags
    .map(stripHtml)
    .map((tag) => tag.trim())
    .filter((tag) => tag.length > 0)
}

/** `assignee`: the body's user_id, else the caller; absent only with auth disabled and no token. */
function newTaskFrom(body: TaskInput, assignee: number | undefined): NewTask {
  if (assignee === undefined) {
    throw invalid([{ in: 'body', field: 'user_id', message: "must have required property 'user_id'" }])
  }
  return {
    title: cleanTitle(body.title),
    description: stripHtml(body.description ?? ''),
    status: body.status ?? 'todo',
    priority: body.priority ?? 'medium',
    user_id: assignee,
    project_id: body.project_id,
    due_date: parseDueDate(body.due_date),
    tags: cleanTags(body.tags ?? []),
  }
}

function changesFrom(patch: TaskPatch): TaskChanges {
  const changes: TaskChanges = {}
  if (patch.title !== undefined) changes.title = cleanTitle(patch.title)
  if (patch.description !== undefined) changes.description = stripHtml(patch.description ?? '')
  if (patch.status !== undefined) changes.status = patch.status
  if (patch.priority !== undefined) changes.priority = patch.priority
  if (patch.user_id !== undefined) changes.user_id = patch.user_id
  if (patch.project_id !== undefined) changes.project_id = patch.project_id
  if (patch.due_date !== undefined) changes.due_date = parseDueDate(patch.due_date)
  if (patch.tags !== undefined) changes.tags = cleanTags(patch.tags ?? [])
  return changes
}

const sameTags = (a: string[], b: string[]) => a.length === b.length && a.every((tag, i) => tag === b[i])

/** Only the changes that differ from the stored row: a PATCH restating values changes nothing. */
function effectiveChanges(current: TaskRow, changes: TaskChanges): TaskChanges {
  const effective: TaskChanges = {}
  for (const [field, value] of Object.entries(changes) as [keyof TaskChanges, unknown][]) {
    const stored = current[field]
    const same =
      field === 'due_date'
        ? (stored as Date | null)?.getTime() === (value as Date | null)?.getTime()
        : field === 'tags'
          ? sameTags(stored as string[], value as string[])
          : stored === value
    if (!same) Object.assign(effective, { [field]: value })
  }
  return effective
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
        body: TaskInputSchema,
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
        body: TaskInputSchema,
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
        body: TaskPatchSchema,
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
