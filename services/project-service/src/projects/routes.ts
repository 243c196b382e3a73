import { traceparentOf } from '@task-manager/events'
import { type App, HttpProblem, problemResponses, problemType } from '@task-manager/service-kit'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { UserDirectory } from '../users/client.js'
import {
  assertManagerLocked,
  assertMay,
  type Caller,
  listedUser,
  projectNotFound,
  roleLocked,
  visibleProject,
} from './access.js'
import { type ProjectRepository, toProject } from './repository.js'
import {
  AuthenticatedProjectInput,
  PageCursor,
  Project,
  ProjectInput,
  ProjectListQuery,
  ProjectParams,
  ProjectPatch,
} from './schemas.js'

/** The options of both route plugins: the projects (here) and their members (member-routes.ts). */
export interface ProjectRoutesOptions {
  repository: ProjectRepository
  users: UserDirectory
  /** Who is calling (see access.ts); called after authentication. */
  callerOf: (request: FastifyRequest) => Caller
  maxMembersPerProject: number
}

const problems = problemResponses

/** The W3C trace context of the request, carried into the events it causes. */
const traceOf = (request: FastifyRequest) => traceparentOf(request.headers.traceparent)

export async function projectRoutes(app: App, { repository, callerOf }: ProjectRoutesOptions) {
  const tags = ['projects']

  app.post(
    '/projects',
    {
      schema: {
        tags,
        summary: 'Create a project; the caller becomes its owner',
        // One schema per mode, so the document of each says what it accepts.
        body: (app.authMode === 'disabled' ? ProjectInput : AuthenticatedProjectInput) as typeof ProjectInput,
        response: { 201: Project, ...problems(401, 422, 503) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request)
      const { owner_id: ownerId, name, description, status } = request.body
      let owner: number
      if (caller.open) {
        // No authentication: the body names the first owner (a valid token, if sent, stands in for it).
        const fallback = request.principal?.id
        if (ownerId === undefined && fallback === undefined) {
          throw new HttpProblem(422, "Invalid body field 'owner_id': required when AUTH_MODE=disabled", {
            type: problemType('validation-failed'),
            errors: [{ in: 'body', field: 'owner_id', message: 'required when AUTH_MODE=disabled' }],
          })
        }
        owner = ownerId ?? (fallback as number)
      } else {
        if (ownerId !== undefined) {
          throw new HttpProblem(
            422,
            "Invalid body field 'owner_id': the caller becomes the owner; it cannot be set",
            {
              type: problemType('validation-failed'),
              errors: [
                { in: 'body', field: 'owner_id', message: 'the caller becomes the owner; it cannot be set' },
              ],
            },
          )
        }
        owner = caller.id
      }
      const created = await repository.create(
        { name: name.trim(), description: description ?? '', status: status ?? 'active' },
        owner,
        traceOf(request),
      )
      // `role` is the caller's: with AUTH_MODE=disabled there is no caller.
      const row = caller.open ? { ...created, role: null } : created
      return reply.code(201).header('location', `/projects/${row.id}`).send(toProject(row))
    },
  )

  app.get(
    '/projects',
    {
      schema: {
        tags,
        summary: "The caller's projects, in id order",
        description: 'Pages of `limit`; the `Link: rel="next"` header points to the next page.',
        querystring: ProjectListQuery,
        response: { 200: Type.Array(Project), ...problems(401, 403, 422) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request)
      const { status, limit, cursor } = request.query
      let memberId = request.query.user_id
      if (!caller.open) memberId = listedUser(caller, memberId, 'projects')
      const afterId = cursor === undefined ? undefined : PageCursor.decode(cursor).after
      const { rows, more } = await repository.list({ memberId, status, afterId, limit })
      const last = rows[rows.length - 1]
      if (more && last) {
        const next = new URLSearchParams({
          limit: String(limit),
          cursor: PageCursor.encode({ after: last.id }),
        })
        if (status !== undefined) next.set('status', status)
        if (request.query.user_id !== undefined) next.set('user_id', String(request.query.user_id))
        reply.header('link', `</projects?${next}>; rel="next"`)
      }
      return rows.map(toProject)
    },
  )

  app.get(
    '/projects/:id',
    {
      schema: {
        tags,
        summary: 'One project (members and administrators only)',
        params: ProjectParams,
        response: { 200: Project, ...problems(401, 404, 422) },
      },
    },
    async (request) => toProject(await visibleProject(repository, request.params.id, callerOf(request))),
  )

  app.patch(
    '/projects/:id',
    {
      schema: {
        tags,
        summary: 'Change name, description or status (owners and editors)',
        params: ProjectParams,
        body: ProjectPatch,
        response: { 200: Project, ...problems(401, 403, 404, 422) },
      },
    },
    async (request) => {
      const caller = callerOf(request)
      const { id } = request.params
      const { name, description, status } = request.body
      return repository.withLockedProject(
        id,
        async (locked) => {
          if (!locked) throw projectNotFound(id)
          const role = await roleLocked(locked, caller)
          assertMay('edit', id, caller, role)
          const changes = {
            ...(name !== undefined && name.trim() !== locked.project.name && { name: name.trim() }),
            ...(description !== undefined && description !== locked.project.description && { description }),
            ...(status !== undefined && status !== locked.project.status && { status }),
          }
          // Only ignored fields, or the values already stored: nothing to write, updated_at stays.
          if (Object.keys(changes).length === 0) return toProject({ ...locked.project, role })
          const row = await locked.update(changes)
          return toProject({ ...row, role })
        },
        traceOf(request),
      )
    },
  )

  app.delete(
    '/projects/:id',
    {
      schema: {
        tags,
        summary: 'Delete a project and its memberships (owners)',
        params: ProjectParams,
        response: { 204: Type.Null(), ...problems(401, 403, 404, 422) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request)
      const { id } = request.params
      await repository.withLockedProject(
        id,
        async (locked) => {
          if (!locked) throw projectNotFound(id)
          await assertManagerLocked(locked, caller)
          await locked.deleteProject()
        },
        traceOf(request),
      )
      return reply.code(204).send(null)
    },
  )
}
