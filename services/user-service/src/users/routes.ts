import type { Principal } from '@task-manager/auth'
import { traceparentOf } from '@task-manager/events'
import { type App, HttpProblem, problemType } from '@task-manager/service-kit'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { PasswordHasher } from '../passwords.js'
import { toPublicProfile, toUser } from './present.js'
import { EmailTaken, type UserRepository } from './repository.js'
import {
  ProfileChanges,
  PublicProfile,
  problems,
  Registration,
  RoleChange,
  User,
  UserLookupQuery,
  UserParams,
} from './schemas.js'

export interface UserRoutesOptions {
  repository: UserRepository
  hasher: PasswordHasher
  registrationsPerHour: number
}

const emailTaken = () =>
  new HttpProblem(409, 'An account with this email already exists', { type: problemType('email-taken') })

const unauthenticated = (detail: string) =>
  new HttpProblem(401, detail, {
    type: problemType('authentication-required'),
    headers: { 'www-authenticate': 'Bearer realm="task-manager"' },
  })

/** The verified caller; 401 when there is none (possible only with AUTH_MODE=disabled). */
function callerOf(request: FastifyRequest): Principal {
  if (!request.principal) {
    throw unauthenticated('Authentication required: send "Authorization: Bearer <access token>"')
  }
  return request.principal
}

const traceOf = (request: FastifyRequest) => traceparentOf(request.headers.traceparent)

function trimmedName(name: string): string {
  const trimmed = name.trim()
  if (trimmed.length === 0) {
    throw new HttpProblem(422, "Invalid body field 'name': must not be blank", {
      type: problemType('validation-failed'),
      errors: [{ in: 'body', field: 'name', message: 'must not be blank' }],
    })
  }
  return trimmed
}

export async function userRoutes(app: App, { repository, hasher, registrationsPerHour }: UserRoutesOptions) {
  /** The caller's own row; a token outliving its account (deleted meanwhile) no longer authenticates. */
  async function currentUser(request: FastifyRequest) {
    const caller = callerOf(request)
    const row = await repository.findById(caller.id)
    if (!row) throw unauthenticated('The account this access token belongs to no longer exists')
    return row
  }

  /** Admin rights come from the database, not the token, so a demotion takes effect at once. */
  async function isAdmin(caller: Principal): Promise<boolean> {
    if (caller.role !== 'admin') return false
    return (await repository.findById(caller.id))?.role === 'admin'
  }

  app.post(
    '/users',
    {
      config: { rateLimit: { max: registrationsPerHour, timeWindow: 3_600_000 } },
      schema: {
        summary: 'Register a user',
        description:
          'Anyone may register. The role is always `user` (the first admin comes from configuration); `id`, `role`, `created_at` and other unknown fields in the body are ignored.',
        tags: ['users'],
        body: Registration,
        response: { 201: User, ...problems(409, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      const { email, password } = request.body
      const name = trimmedName(request.body.name)
      const passwordHash = await hasher.hash(password)
      try {
        const row = await repository.create({ email: email.trim(), name, password_hash: passwordHash })
        request.log.info({ user_id: row.id }, 'user registered')
        return reply.code(201).header('location', `/users/${row.id}`).send(toUser(row))
      } catch (error) {
        if (error instanceof EmailTaken) throw emailTaken()
        throw error
      }
    },
  )

  app.get(
    '/users/me',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'The caller’s own account',
        tags: ['users'],
        response: { 200: User, ...problems(401) },
      },
    },
    async (request) => toUser(await currentUser(request)),
  )

  app.patch(
    '/users/me',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'Change the caller’s name, email or password',
        description:
          'Changing email or password needs `current_password`. `role`, `id` and `created_at` cannot be changed here and are ignored.',
        tags: ['users'],
        body: ProfileChanges,
        response: { 200: User, ...problems(401, 403, 409, 422) },
      },
    },
    async (request) => {
      const row = await currentUser(request)
      const { name, email, password, current_password: currentPassword } = request.body
      // Nothing to change (only fields that are ignored, such as role, id or created_at): nothing is written.
      if (name === undefined && email === undefined && password === undefined) return toUser(row)
      const changes: { name?: string; email?: string; password_hash?: string } = {}
      if (name !== undefined) changes.name = trimmedName(name)
      if (email !== undefined || password !== undefined) {
        if (currentPassword === undefined) {
          throw new HttpProblem(422, 'current_password is required to change the email or password', {
            type: problemType('validation-failed'),
            errors: [
              { in: 'body', field: 'current_password', message: 'is required to change email or password' },
            ],
          })
        }
        if (!(await hasher.verify(currentPassword, row.password_hash))) {
          throw new HttpProblem(403, 'current_password is not correct', {
            type: problemType('wrong-password'),
          })
        }
        if (email !== undefined) changes.email = email.trim()
        if (password !== undefined) changes.password_hash = await hasher.hash(password)
      }
      try {
        const updated = await repository.update(row.id, changes, traceOf(request))
        if (!updated) throw unauthenticated('The account this access token belongs to no longer exists')
        return toUser(updated)
      } catch (error) {
        if (error instanceof EmailTaken) throw emailTaken()
        throw error
      }
    },
  )

  app.delete(
    '/users/me',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'Delete the caller’s account',
        tags: ['users'],
        response: { 204: Type.Null(), ...problems(401, 409) },
      },
    },
    async (request, reply) => {
      const row = await currentUser(request)
      await deleteAs(row.id, request)
      return reply.code(204).send(null)
    },
  )

  async function deleteAs(id: number, request: FastifyRequest): Promise<void> {
    const outcome = await repository.deleteUser(id, traceOf(request))
    if (outcome === 'not-found') throw new HttpProblem(404, `User ${id} not found`)
    if (outcome === 'last-admin') {
      throw new HttpProblem(409, `User ${id} is the last admin and cannot be deleted`, {
        type: problemType('last-admin'),
      })
    }
  }

  app.get(
    '/users',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'Find a user by exact email (public profile only)',
        description:
          'Answers the account registered with this email as `[{id, name}]`, or `[]`. It is how a project ' +
          'owner invites someone by email. It tells a signed-in caller whether an email is registered, which ' +
          'registration (409) tells anyone already; the per-client read limit bounds how fast.',
        tags: ['users'],
        querystring: UserLookupQuery,
        response: { 200: Type.Array(PublicProfile), ...problems(401, 422) },
      },
    },
    async (request) => {
      const row = await repository.findByEmail(request.query.email.trim())
      return row ? [toPublicProfile(row)] : []
    },
  )

  app.get(
    '/users/:id',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'A user’s public profile (id and name)',
        description:
          'Other services ask this to check that a user exists. Email and role are never shown here.',
        tags: ['users'],
        params: UserParams,
        response: { 200: PublicProfile, ...problems(401, 404) },
      },
    },
    async (request) => {
      const row = await repository.findById(request.params.id)
      if (!row) throw new HttpProblem(404, `User ${request.params.id} not found`)
      return toPublicProfile(row)
    },
  )

  app.delete(
    '/users/:id',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'Delete a user (the user themself or an admin)',
        tags: ['users'],
        params: UserParams,
        response: { 204: Type.Null(), ...problems(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { id } = request.params
      const caller = request.principal
      // Without a caller we are in AUTH_MODE=disabled (authenticate refused everyone else): the open API.
      if (caller && caller.id !== id && !(await isAdmin(caller))) {
        throw new HttpProblem(403, 'Only the user themself or an admin may delete an account', {
          type: problemType('forbidden'),
        })
      }
      await deleteAs(id, request)
      return reply.code(204).send(null)
    },
  )

  app.put(
    '/users/:id/role',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'Set a user’s role (admins only)',
        tags: ['users'],
        params: UserParams,
        body: RoleChange,
        response: { 200: User, ...problems(401, 403, 404, 409, 422) },
      },
    },
    async (request) => {
      const caller = callerOf(request)
      if (!(await isAdmin(caller))) {
        throw new HttpProblem(403, 'Only an admin may change roles', { type: problemType('forbidden') })
      }
      const { id } = request.params
      if (id === caller.id && request.body.role !== 'admin') {
        throw new HttpProblem(409, 'An admin cannot demote themself; another admin must', {
          type: problemType('last-admin'),
        })
      }
      const row = await repository.setRole(id, request.body.role, traceOf(request))
      if (!row) throw new HttpProblem(404, `User ${id} not found`)
      request.log.info({ user_id: id, role: row.role, by: caller.id }, 'role changed')
      return toUser(row)
    },
  )
}
