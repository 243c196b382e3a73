import { type FieldError, HttpProblem, parseDateOrDateTime, problemType } from '@task-manager/service-kit'
import type { TaskRow } from '../db/schema.js'
import type { NewTask, TaskChanges } from './repository.js'
import { stripHtml } from './sanitize.js'
import type { TaskInput, TaskPatch } from './schemas.js'

// What a request body becomes before it reaches the repository: HTML stripped, dates parsed, defaults
// applied (POST and PUT), only the fields a merge patch names (PATCH), and of those only what differs.

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
export function newTaskFrom(body: TaskInput, assignee: number | undefined): NewTask {
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

export function changesFrom(patch: TaskPatch): TaskChanges {
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
export function effectiveChanges(current: TaskRow, changes: TaskChanges): TaskChanges {
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
