import { CursorParameter, DateOrDateTime, Id, Text } from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

export const TaskStatus = Type.Union([
  Type.Literal('todo'),
  Type.Literal('in_progress'),
  Type.Literal('done'),
])
export const TaskPriority = Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high')])

/** ISO 8601 date or date-time; a date-time without an offset is taken as UTC. */
export const DueDate = Type.Union([
  DateOrDateTime({
    description: 'An existing ISO 8601 date or date-time (UTC when no offset is given)',
    examples: ['2026-12-01T17:00:00Z'],
  }),
  Type.Null(),
])

export const Title = Text({
  minLength: 1,
  maxLength: 200,
  description: 'HTML is stripped; must not be empty after',
})
export const Description = Text({ maxLength: 2000, description: 'HTML is stripped' })
export const Tags = Type.Array(Text({ maxLength: 50 }), {
  maxItems: 20,
  description: 'HTML is stripped',
})
export const PositiveId = Id()

// A task as answered: the enums as `type` + `enum` and the nullable date as a type list, not `anyOf`, which
// fast-json-stringify resolves per value by running Ajv on each branch (three fields, 50 tasks a page).
const StatusOut = Type.Unsafe<Static<typeof TaskStatus>>({
  type: 'string',
  enum: ['todo', 'in_progress', 'done'],
})
const PriorityOut = Type.Unsafe<Static<typeof TaskPriority>>({
  type: 'string',
  enum: ['low', 'medium', 'high'],
})

export const Task = Type.Object(
  {
    id: Type.Integer(),
    title: Type.String(),
    description: Type.String(),
    status: StatusOut,
    priority: PriorityOut,
    user_id: Type.Integer(),
    project_id: Type.Integer(),
    due_date: Type.Unsafe<string | null>({ type: ['string', 'null'], format: 'date-time' }),
    tags: Type.Array(Type.String()),
    version: Type.Integer({ description: 'Increases by one on every change; the ETag carries it' }),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  { $id: 'Task' },
)
export type Task = Static<typeof Task>

const writable = {
  title: Title,
  description: Type.Optional(Description),
  status: Type.Optional(TaskStatus),
  priority: Type.Optional(TaskPriority),
  user_id: Type.Optional(PositiveId),
  project_id: PositiveId,
  due_date: Type.Optional(DueDate),
  tags: Type.Optional(Tags),
}

/**
 * Create and full-replacement body. Unknown properties (`id`, `version`, `created_at`, …) are
 * removed before the handler sees them: clients cannot assign them.
 */
export const TaskInput = Type.Object(writable, { additionalProperties: false })
export type TaskInput = Static<typeof TaskInput>

/** JSON merge patch (RFC 7396): present fields replace, `null` clears the nullable ones. */
export const TaskPatch = Type.Object(
  {
    title: Type.Optional(Title),
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    status: Type.Optional(TaskStatus),
    priority: Type.Optional(TaskPriority),
    user_id: Type.Optional(PositiveId),
    project_id: Type.Optional(PositiveId),
    due_date: Type.Optional(DueDate),
    tags: Type.Optional(Type.Union([Tags, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
)
export type TaskPatch = Static<typeof TaskPatch>

export const StatusUpdate = Type.Object({ status: TaskStatus }, { additionalProperties: false })

export const TaskParams = Type.Object({ id: PositiveId })

export const SORT_FIELDS = ['created_at', 'updated_at', 'due_date', 'priority'] as const

export const TaskListQuery = Type.Object(
  {
    user_id: Type.Optional(PositiveId),
    project_id: Type.Optional(PositiveId),
    status: Type.Optional(TaskStatus),
    priority: Type.Optional(TaskPriority),
    tag: Type.Optional(Text({ minLength: 1, maxLength: 50 })),
    q: Type.Optional(Text({ minLength: 1, maxLength: 200, description: 'Text in title or description' })),
    due_before: Type.Optional(DateOrDateTime({ description: 'Tasks due before this date or date-time' })),
    due_after: Type.Optional(DateOrDateTime({ description: 'Tasks due after this date or date-time' })),
    sort: Type.Optional(
      Type.Union(
        SORT_FIELDS.flatMap((field) => [Type.Literal(field), Type.Literal(`-${field}`)]),
        { default: 'created_at', description: 'Sort field; a leading `-` sorts descending' },
      ),
    ),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(CursorParameter(500)),
  },
  { additionalProperties: false },
)
export type TaskListQuery = Static<typeof TaskListQuery>

export const IfMatchHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ maxLength: 200 })),
})
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
})
