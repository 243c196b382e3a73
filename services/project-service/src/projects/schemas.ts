import { CursorParameter, cursorCodec, Id, INT4_MAX, Text } from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

export const ProjectStatus = Type.Union([Type.Literal('active'), Type.Literal('archived')])
export const MemberRole = Type.Union([Type.Literal('owner'), Type.Literal('editor'), Type.Literal('viewer')])
export const PositiveId = Id()

export const Name = Text({
  minLength: 1,
  maxLength: 200,
  notBlank: true,
  description: 'Must contain a non-space character',
})
export const Description = Text({ maxLength: 2000 })

export const Project = Type.Object(
  {
    id: Type.Integer(),
    name: Type.String(),
    description: Type.String(),
    status: ProjectStatus,
    role: Type.Union([MemberRole, Type.Null()], {
      description:
        "The caller's role in the project; null when the caller is not a member (an administrator reading, or AUTH_MODE=disabled)",
    }),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Project' },
)
export type Project = Static<typeof Project>

/**
 * Create body. Unknown properties (`id`, `created_at`, `role`, …) are removed before the handler sees
 * them: clients cannot assign them. `owner_id` is accepted only with AUTH_MODE=disabled (there is no
 * caller to make owner); with authentication the caller becomes the owner and `owner_id` is refused.
 */
export const ProjectInput = Type.Object(
  {
    name: Name,
    description: Type.Optional(Description),
    status: Type.Optional(ProjectStatus),
    owner_id: Type.Optional({ ...PositiveId, description: 'Only with AUTH_MODE=disabled: the first owner' }),
  },
  { additionalProperties: false },
)
export type ProjectInput = Static<typeof ProjectInput>

/** The create body with authentication on: the caller becomes the owner, so `owner_id` is refused (422). */
export const AuthenticatedProjectInput = Type.Object(
  {
    ...ProjectInput.properties,
    owner_id: Type.Optional(
      Type.Never({ description: 'Not with authentication: the caller becomes the owner (422 when sent)' }),
    ),
  },
  { additionalProperties: false },
)

export const ProjectPatch = Type.Object(
  {
    name: Type.Optional(Name),
    description: Type.Optional(Description),
    status: Type.Optional(ProjectStatus),
  },
  { additionalProperties: false, minProperties: 1 },
)
export type ProjectPatch = Static<typeof ProjectPatch>

export const ProjectParams = Type.Object({ id: PositiveId })
export const MemberParams = Type.Object({ id: PositiveId, userId: PositiveId })
export const ProjectListQuery = Type.Object(
  {
    status: Type.Optional(ProjectStatus),
    user_id: Type.Optional({
      ...PositiveId,
      description:
        "Projects this user is a member of: administrators and AUTH_MODE=disabled only (default: the caller's)",
    }),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(CursorParameter(100)),
  },
  { additionalProperties: false },
)
export type ProjectListQuery = Static<typeof ProjectListQuery>

export const Member = Type.Object(
  {
    project_id: Type.Integer(),
    user_id: Type.Integer(),
    role: MemberRole,
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Member' },
)
export type Member = Static<typeof Member>

export const MemberInput = Type.Object(
  { user_id: PositiveId, role: MemberRole },
  { additionalProperties: false },
)
export type MemberInput = Static<typeof MemberInput>

export const MemberPatch = Type.Object({ role: MemberRole }, { additionalProperties: false })
export type MemberPatch = Static<typeof MemberPatch>

/** The membership lookup other services call on every task request. */
export const Membership = Type.Object({
  project_id: Type.Integer(),
  user_id: Type.Integer(),
  role: MemberRole,
})
export type Membership = Static<typeof Membership>

export const MembershipListQuery = Type.Object(
  {
    user_id: Type.Optional({
      ...PositiveId,
      description: "Whose memberships: default the caller's; another user's for administrators only",
    }),
    limit: Type.Integer({ minimum: 1, maximum: 5000, default: 1000 }),
    cursor: Type.Optional(CursorParameter(100)),
  },
  { additionalProperties: false },
)
export type MembershipListQuery = Static<typeof MembershipListQuery>

/** The cursor of both lists (the kit's format): the last id of the previous page, checked to be a possible id. */
export const PageCursor = cursorCodec(Type.Object({ after: Type.Integer({ minimum: 0, maximum: INT4_MAX }) }))
