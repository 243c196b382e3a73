import { traceparentOf } from '@task-manager/events'
import {
  type App,
  cursorCodec,
  HttpProblem,
  INT4_MAX,
  problemResponses,
  problemType,
  propagationHeaders,
} from '@task-manager/service-kit'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { MemberRole, MemberRow } from '../db/schema.js'
import type { UserDirectory } from '../users/client.js'
import { assertMay, assertVisible, type Caller, notAMember, projectNotFound } from './access.js'
import { type LockedProject, type ProjectRepository, toMember, toProject } from './repository.js'
import {
  AuthenticatedProjectInput,
  Member,
  MemberInput,
  MemberParams,
  MemberPatch,
  Membership,
  MembershipListQuery,
  Project,
  ProjectInput,
  ProjectListQuery,
  ProjectParams,
  ProjectPatch,
} from './schemas.js'

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

// The kit's cursor format: the last id of the previous page, checked to be a possible id on the way in.
const cursors = cursorCodec(Type.Object({ after: Type.Integer({ minimum: 0, maximum: INT4_MAX }) }))
const encodeCursor = (afterId: number) => cursors.encode({ after: afterId })
const decodeCursor = (cursor: string) => cursors.decode(cursor).after

function lastOwner(projectId: number): HttpProblem {
  return new HttpProblem(
    409,
    `Project ${projectId} must keep at least one owner; make another member owner first (or delete the project)`,
    { type: problemType('last-owner') },
  )
}

/** The caller's role read inside the locked transaction: it may have changed since the request began. */
async function roleLocked(locked: LockedProject, caller: Caller): Promise<MemberRole | null> {
  return caller.open ? null : ((await locked.member(caller.id))?.role ?? null)
}

async function assertManagerLocked(locked: LockedProject, caller: Caller): Promise<void> {
  assertMay('manage', locked.project.id, caller, await roleLocked(locked, caller))
}

export async function projectRoutes(
  app: App,
  { repository, users, callerOf, maxMembersPerProject }: ProjectRoutesOptions,
) {
  const tags = ['projects']
  const memberTags = ['members']

  /** The project as the caller sees it, or a 404 problem. */
  async function visibleProject(id: number, caller: Caller) {
    const row = await repository.find(id, caller.open ? null : caller.id)
    if (!row) throw projectNotFound(id)
    assertVisible(id, caller, row.role)
    return row
  }

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
      if (!caller.open) {
        if (memberId !== undefined && memberId !== caller.id && !caller.admin) {
          throw new HttpProblem(403, "Only administrators may list another user's projects", {
            type: problemType('forbidden'),
          })
        }
        memberId ??= caller.id
      }
      const afterId = cursor === undefined ? undefined : decodeCursor(cursor)
      const { rows, more } = await repository.list({ memberId, status, afterId, limit })
      const last = rows[rows.length - 1]
      if (more && last) {
        const next = new URLSearchParams({ limit: String(limit), cursor: encodeCursor(last.id) })
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
    async (request) => toProject(await visibleProject(request.params.id, callerOf(request))),
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

  app.get(
    '/projects/:id/members',
    {
      schema: {
        tags: memberTags,
        summary: 'The members of a project, by user id',
        params: ProjectParams,
        response: { 200: Type.Array(Member), ...problems(401, 404, 422) },
      },
    },
    async (request) => {
      const { id } = request.params
      await visibleProject(id, callerOf(request))
      return (await repository.members(id)).map(toMember)
    },
  )

  app.post(
    '/projects/:id/members',
    {
      schema: {
        tags: memberTags,
        summary: 'Add a member (owners); the user must exist at the user-service',
        description:
          'Adding a user who is already a member with the same role answers 200 with the membership (a safe retry); ' +
          'with a different role 409: change roles with PATCH /projects/{id}/members/{userId}.',
        params: ProjectParams,
        body: MemberInput,
        response: { 200: Member, 201: Member, ...problems(401, 403, 404, 409, 422, 503) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request)
      const { id } = request.params
      const { user_id: userId, role } = request.body

      const existingAnswer = (existing: MemberRow) => {
        if (existing.role === role) return { status: 200 as const, member: existing }
        throw new HttpProblem(
          409,
          `User ${userId} is already a member of project ${id} as ${existing.role}; change the role with PATCH /projects/${id}/members/${userId}`,
          { type: problemType('already-member') },
        )
      }
      const answer = ({ status, member }: { status: 200 | 201; member: MemberRow }) => {
        if (status === 201) reply.header('location', `/projects/${id}/members/${userId}`)
        return reply.code(status).send(toMember(member))
      }

      // Authorize before asking the user-service, so outsiders learn nothing about which users exist.
      const current = await visibleProject(id, caller)
      assertMay('manage', id, caller, current.role)
      const already = await repository.member(id, userId)
      if (already) return answer(existingAnswer(already))

      const exists = await users.exists(userId, {
        authorization: request.headers.authorization,
        headers: propagationHeaders(request),
      })
      if (!exists) {
        throw new HttpProblem(422, `User ${userId} does not exist`, {
          type: problemType('unknown-user'),
          errors: [{ in: 'body', field: 'user_id', message: `user ${userId} does not exist` }],
        })
      }

      // The answer is sent only after the transaction committed: nothing is acknowledged that could be lost.
      const outcome = await repository.withLockedProject(
        id,
        async (locked) => {
          if (!locked) throw projectNotFound(id)
          await assertManagerLocked(locked, caller)
          const existing = await locked.member(userId)
          if (existing) return existingAnswer(existing)
          if ((await locked.memberCount()) >= maxMembersPerProject) {
            throw new HttpProblem(
              409,
              `Project ${id} already has the maximum of ${maxMembersPerProject} members`,
              {
                type: problemType('member-limit'),
              },
            )
          }
          return { status: 201 as const, member: await locked.add(userId, role) }
        },
        traceOf(request),
      )
      return answer(outcome)
    },
  )

  app.patch(
    '/projects/:id/members/:userId',
    {
      schema: {
        tags: memberTags,
        summary: "Change a member's role (owners); the last owner cannot step down",
        params: MemberParams,
        body: MemberPatch,
        response: { 200: Member, ...problems(401, 403, 404, 409, 422) },
      },
    },
    async (request) => {
      const caller = callerOf(request)
      const { id, userId } = request.params
      const { role } = request.body
      return repository.withLockedProject(
        id,
        async (locked) => {
          if (!locked) throw projectNotFound(id)
          await assertManagerLocked(locked, caller)
          const target = await locked.member(userId)
          if (!target) throw notAMember(id, userId)
          if (target.role === role) return toMember(target)
          if (target.role === 'owner' && (await locked.ownerCount()) <= 1) throw lastOwner(id)
          return toMember(await locked.setRole(userId, role))
        },
        traceOf(request),
      )
    },
  )

  app.delete(
    '/projects/:id/members/:userId',
    {
      schema: {
        tags: memberTags,
        summary: 'Remove a member (owners), or leave a project (any member, yourself)',
        params: MemberParams,
        response: { 204: Type.Null(), ...problems(401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request)
      const { id, userId } = request.params
      await repository.withLockedProject(
        id,
        async (locked) => {
          if (!locked) throw projectNotFound(id)
          if (!caller.open && caller.id === userId) {
            // Leaving: any member may, the last owner excepted.
            const self = await locked.member(userId)
            assertVisible(id, caller, self?.role ?? null)
          } else {
            await assertManagerLocked(locked, caller)
          }
          const target = await locked.member(userId)
          if (!target) throw notAMember(id, userId)
          if (target.role === 'owner' && (await locked.ownerCount()) <= 1) throw lastOwner(id)
          await locked.remove(userId, !caller.open && caller.id === userId ? 'left' : 'removed')
        },
        traceOf(request),
      )
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/projects/:id/members/:userId',
    {
      schema: {
        tags: memberTags,
        summary: "User U's role in project P: the lookup other services make on every task request",
        description:
          'One primary-key probe. Answers for the caller themself, for members of the project about anyone, ' +
          'and for administrators; anyone else gets 404 as if the project did not exist.',
        params: MemberParams,
        response: { 200: Membership, ...problems(401, 404, 422) },
      },
    },
    async (request) => {
      const caller = callerOf(request)
      const { id, userId } = request.params
      const roles = await repository.roles(id, userId, caller.open ? userId : caller.id)
      if (!caller.open && !caller.admin && caller.id !== userId && !roles.has(caller.id)) {
        throw projectNotFound(id)
      }
      const role = roles.get(userId)
      if (!role) throw !caller.open && caller.id === userId ? projectNotFound(id) : notAMember(id, userId)
      return { project_id: id, user_id: userId, role }
    },
  )

  app.get(
    '/memberships',
    {
      schema: {
        tags: memberTags,
        summary: "A user's memberships: every project they belong to, with their role",
        description:
          'For other services that must filter by "projects the caller may see" (the task-service\'s task lists). ' +
          'Pages of `limit` in project id order; `Link: rel="next"` while more follow. ' +
          "Your own by default; another user's for administrators only. Needs `user_id` with AUTH_MODE=disabled.",
        querystring: MembershipListQuery,
        response: { 200: Type.Array(Membership), ...problems(401, 403, 422) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request)
      const { limit, cursor } = request.query
      let userId = request.query.user_id
      if (caller.open) {
        if (userId === undefined) {
          throw new HttpProblem(
            422,
            "Invalid querystring field 'user_id': required when AUTH_MODE=disabled",
            {
              type: problemType('validation-failed'),
              errors: [{ in: 'querystring', field: 'user_id', message: 'required when AUTH_MODE=disabled' }],
            },
          )
        }
      } else {
        if (userId !== undefined && userId !== caller.id && !caller.admin) {
          throw new HttpProblem(403, "Only administrators may list another user's memberships", {
            type: problemType('forbidden'),
          })
        }
        userId ??= caller.id
      }
      const afterId = cursor === undefined ? undefined : decodeCursor(cursor)
      const { rows, more } = await repository.memberships(userId, afterId, limit)
      const last = rows[rows.length - 1]
      if (more && last) {
        const next = new URLSearchParams({ limit: String(limit), cursor: encodeCursor(last.project_id) })
        if (request.query.user_id !== undefined) next.set('user_id', String(request.query.user_id))
        reply.header('link', `</memberships?${next}>; rel="next"`)
      }
      const member = userId
      return rows.map((row) => ({ project_id: row.project_id, user_id: member, role: row.role }))
    },
  )
}
