import { traceparentOf } from '@task-manager/events'
import {
  type App,
  HttpProblem,
  problemResponses,
  problemType,
  propagationHeaders,
} from '@task-manager/service-kit'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { MemberRow } from '../db/schema.js'
import {
  assertManagerLocked,
  assertMay,
  assertVisible,
  listedUser,
  notAMember,
  projectNotFound,
  visibleProject,
} from './access.js'
import { toMember } from './repository.js'
import type { ProjectRoutesOptions } from './routes.js'
import {
  Member,
  MemberInput,
  MemberParams,
  MemberPatch,
  Membership,
  MembershipListQuery,
  PageCursor,
  ProjectParams,
} from './schemas.js'

const problems = problemResponses

/** The W3C trace context of the request, carried into the events it causes. */
const traceOf = (request: FastifyRequest) => traceparentOf(request.headers.traceparent)

function lastOwner(projectId: number): HttpProblem {
  return new HttpProblem(
    409,
    `Project ${projectId} must keep at least one owner; make another member owner first (or delete the project)`,
    { type: problemType('last-owner') },
  )
}

/** The members of a project (owners manage them; the last owner stays) and the membership lookups other services make. */
export async function memberRoutes(
  app: App,
  { repository, users, callerOf, maxMembersPerProject }: ProjectRoutesOptions,
) {
  const memberTags = ['members']

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
      await visibleProject(repository, id, callerOf(request))
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
      const current = await visibleProject(repository, id, caller)
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
        userId = listedUser(caller, userId, 'memberships')
      }
      const afterId = cursor === undefined ? undefined : PageCursor.decode(cursor).after
      const { rows, more } = await repository.memberships(userId, afterId, limit)
      const last = rows[rows.length - 1]
      if (more && last) {
        const next = new URLSearchParams({
          limit: String(limit),
          cursor: PageCursor.encode({ after: last.project_id }),
        })
        if (request.query.user_id !== undefined) next.set('user_id', String(request.query.user_id))
        reply.header('link', `</memberships?${next}>; rel="next"`)
      }
      const member = userId
      return rows.map((row) => ({ project_id: row.project_id, user_id: member, role: row.role }))
    },
  )
}
