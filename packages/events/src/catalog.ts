import { type Static, type TSchema, Type } from 'typebox'

/**
 * Every stream and every event of the system. A stream per producing service, subjects
 * `<service>.<aggregate>.<what happened>`; the event's `type` is its subject. docs/events.md describes
 * each event's producer, consumers and what they do.
 */
export const STREAMS = {
  projects: { name: 'PROJECTS', subjects: ['projects.>'], producer: 'project-service' },
  users: { name: 'USERS', subjects: ['users.>'], producer: 'user-service' },
  /** Events a consumer could not handle after its last delivery: `deadletter.<consumer>.<subject>`. */
  deadLetter: { name: 'DEADLETTER', subjects: ['deadletter.>'], producer: 'every consumer' },
} as const

export type StreamName = (typeof STREAMS)[keyof typeof STREAMS]['name']

const Id = Type.Integer({ minimum: 1 })
/** Epoch seconds with millisecond precision (a token's `iat` may be fractional too). */
const ValidAfter = Type.Number({ minimum: 0 })
const ProjectRole = Type.Union([Type.Literal('owner'), Type.Literal('editor'), Type.Literal('viewer')])

/** The payload schema and current version of each event type. */
export const EVENTS = {
  'projects.member.added': {
    version: 1,
    aggregate: 'project',
    data: Type.Object({ project_id: Id, user_id: Id, role: ProjectRole }),
  },
  'projects.member.role_changed': {
    version: 1,
    aggregate: 'project',
    data: Type.Object({ project_id: Id, user_id: Id, role: ProjectRole, previous_role: ProjectRole }),
  },
  'projects.member.removed': {
    version: 1,
    aggregate: 'project',
    data: Type.Object({
      project_id: Id,
      user_id: Id,
      reason: Type.Union([Type.Literal('removed'), Type.Literal('left'), Type.Literal('user_deleted')]),
      /** An owner of the project after the removal: the removed member's tasks are assigned to them. */
      successor_id: Type.Union([Id, Type.Null()]),
    }),
  },
  'projects.project.deleted': {
    version: 1,
    aggregate: 'project',
    data: Type.Object({
      project_id: Id,
      reason: Type.Union([Type.Literal('deleted'), Type.Literal('last_member_deleted')]),
    }),
  },
  'users.user.tokens_revoked': {
    version: 1,
    aggregate: 'user',
    data: Type.Object({
      user_id: Id,
      /** Tokens of this user with `iat` below this (epoch seconds, millisecond precision) are refused. */
      valid_after: ValidAfter,
      reason: Type.Union([
        Type.Literal('password_changed'),
        Type.Literal('role_changed'),
        Type.Literal('logout'),
      ]),
    }),
  },
  'users.user.deleted': {
    version: 1,
    aggregate: 'user',
    data: Type.Object({ user_id: Id, valid_after: ValidAfter }),
  },
} as const satisfies Record<string, { version: number; aggregate: string; data: TSchema }>

export type EventType = keyof typeof EVENTS
export type EventData<T extends EventType> = Static<(typeof EVENTS)[T]['data']>
