import { Bulkhead, type PreparedQuery, parseDateOrDateTime, prepareQuery } from '@task-manager/service-kit'
import type { Kysely, Transaction } from 'kysely'
import { sql } from 'kysely'
import type { TaskDatabase, TaskRow, TaskRowUpdate, TasksTable } from '../db/schema.js'
import { type Cursor, decodeCursor, encodeCursor } from './cursor.js'
import {
  type IdempotencyClaim,
  type IdempotentOutcome,
  purgeExpiredKeys,
  runIdempotent,
  type StoredResponse,
} from './idempotency.js'
import type { Task, TaskListQuery } from './schemas.js'

export interface NewTask {
  title: string
  description: string
  status: Task['status']
  priority: Task['priority']
  user_id: number
  project_id: number
  due_date: Date | null
  tags: string[]
}

export type TaskChanges = Partial<NewTask>

export const SEARCH_REFUSAL = 'Too many searches in progress; retry shortly'

/**
 * What one list request may cost: its statement's time, and a turn in the bulkhead for text searches. `db` runs
 * the list statements: a pool of its own whose connections carry the lists' `statement_timeout` (set when each
 * connection opens), so a list is one round trip — no transaction to scope a `SET LOCAL`.
 */
export interface ListLimits {
  db: Kysely<TaskDatabase>
  searches: Bulkhead
}

export function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    title: row.title,
    description: row.description,
    status: row.status,
    priority: row.priority,
    user_id: row.user_id,
    project_id: row.project_id,
    due_date: row.due_date ? row.due_date.toISOString() : null,
    tags: row.tags,
    version: row.version,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

export type UpdateOutcome =
  | { kind: 'updated'; task: TaskRow }
  | { kind: 'not_found' }
  | { kind: 'stale'; current: TaskRow }

/**
 * What a list query may see (an authorization scope): everything, only tasks in these projects, or only
 * tasks in the projects this user is a member of by the local read model (one query, no round trip).
 */
export type Visibility = { all: true } | { projectIds: number[] } | { memberOf: number }

// Sort expressions. due_date sorts as +infinity when null so the keyset comparison stays total.
const SORT_EXPRESSIONS = {
  created_at: sql<Date>`created_at`,
  updated_at: sql<Date>`updated_at`,
  due_date: sql<Date>`coalesce(due_date, 'infinity'::timestamptz)`,
  priority: sql<number>`priority_rank`,
} as const

type SortField = keyof typeof SORT_EXPRESSIONS

function cursorValue(row: TaskRow, field: SortField): string | number {
  switch (field) {
    case 'priority':
      return row.priority_rank
    case 'due_date':
      return row.due_date ? row.due_date.toISOString() : 'infinity'
    default:
      return row[field].toISOString()
  }
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`)
}

// Every column, named: a prepared statement with `select *` would fail once a migration adds a column
// ("cached plan must not change result type") on replicas that prepared it before.
const TASK_COLUMNS = [
  'id',
  'title',
  'description',
  'status',
  'priority',
  'priority_rank',
  'user_id',
  'project_id',
  'due_date',
  'tags',
  'version',
  'created_at',
  'updated_at',
] as const satisfies readonly (keyof TasksTable)[]

export class TaskRepository {
  // The hottest query (every GET, PUT, PATCH and DELETE reads the row first): typed with Kysely,
  // compiled once, run as a named prepared statement. bench/db-read.ts measures why.
  private readonly byId: PreparedQuery<TaskRow>

  constructor(
    private readonly db: Kysely<TaskDatabase>,
    private readonly limits: ListLimits,
  ) {
    this.byId = prepareQuery(
      db,
      'task_service_task_by_id',
      db.selectFrom('tasks').select(TASK_COLUMNS).where('id', '=', 0),
    )
  }

  async findById(id: number): Promise<TaskRow | undefined> {
    return (await this.byId.execute([id]))[0]
  }

  async create(
    task: NewTask,
    trx: Kysely<TaskDatabase> | Transaction<TaskDatabase> = this.db,
  ): Promise<TaskRow> {
    return trx.insertInto('tasks').values(task).returningAll().executeTakeFirstOrThrow()
  }

  /** `create` at most once per Idempotency-Key (runIdempotent): the key is claimed in the same transaction. */
  createIdempotent(
    task: NewTask,
    claim: IdempotencyClaim,
    response: (row: TaskRow) => StoredResponse,
  ): Promise<IdempotentOutcome<TaskRow>> {
    return runIdempotent(this.db, claim, async (trx) => {
      const row = await this.create(task, trx)
      return { result: row, response: response(row) }
    })
  }

  /** Removes idempotency keys past their lifetime; run periodically. */
  purgeExpiredKeys(): Promise<number> {
    return purgeExpiredKeys(this.db)
  }

  /**
   * Applies `changes` and bumps the version. With `expectedVersions`, the row changes only if its
   * version is still one of them (compare-and-set in one statement: of two concurrent writers holding the same
   * ETag exactly one succeeds).
   */
  async update(id: number, changes: TaskChanges, expectedVersions?: number[]): Promise<UpdateOutcome> {
    const patch: TaskRowUpdate = { ...changes, updated_at: new Date() }
    let query = this.db
      .updateTable('tasks')
      .set(patch)
      .set((eb) => ({ version: eb('version', '+', 1) }))
      .where('id', '=', id)
    if (expectedVersions !== undefined) query = query.where('version', 'in', expectedVersions)
    const row = await query.returningAll().executeTakeFirst()
    if (row) return { kind: 'updated', task: row }
    const current = await this.findById(id)
    return current ? { kind: 'stale', current } : { kind: 'not_found' }
  }

  async delete(id: number, expectedVersions?: number[]): Promise<UpdateOutcome | { kind: 'deleted' }> {
    let query = this.db.deleteFrom('tasks').where('id', '=', id)
    if (expectedVersions !== undefined) query = query.where('version', 'in', expectedVersions)
    const result = await query.executeTakeFirst()
    if (result.numDeletedRows > 0n) return { kind: 'deleted' }
    const current = await this.findById(id)
    return current ? { kind: 'stale', current } : { kind: 'not_found' }
  }

  /**
   * One page of tasks in (sort key, id) order, resuming strictly after the cursor. Keyset pagination:
   * rows inserted during a scan never shift later pages, so there are no duplicates or gaps.
   */
  async list(
    query: TaskListQuery,
    visibility: Visibility,
  ): Promise<{ rows: TaskRow[]; next: string | null }> {
    const sortParam = query.sort ?? 'created_at'
    const descending = sortParam.startsWith('-')
    const field = (descending ? sortParam.slice(1) : sortParam) as SortField
    const expression = SORT_EXPRESSIONS[field]
    const direction = descending ? 'desc' : 'asc'

    let select = this.db.selectFrom('tasks').selectAll()
    if ('projectIds' in visibility) {
      if (visibility.projectIds.length === 0) return { rows: [], next: null }
      select = select.where('project_id', 'in', visibility.projectIds)
    } else if ('memberOf' in visibility) {
      const memberOf = visibility.memberOf
      select = select.where('project_id', 'in', (eb) =>
        eb.selectFrom('project_members').select('project_id').where('user_id', '=', memberOf),
      )
    }
    if (query.user_id !== undefined) select = select.where('user_id', '=', query.user_id)
    if (query.project_id !== undefined) select = select.where('project_id', '=', query.project_id)
    if (query.status !== undefined) select = select.where('status', '=', query.status)
    if (query.priority !== undefined) select = select.where('priority', '=', query.priority)
    if (query.tag !== undefined)
      select = select.where(sql<boolean>`tags @> array[${query.tag}]::varchar(50)[]`)
    if (query.q !== undefined) {
      const pattern = `%${escapeLike(query.q)}%`
      select = select.where((eb) =>
        eb.or([eb('title', 'ilike', pattern), eb('description', 'ilike', pattern)]),
      )
    }
    // The schema's pattern admits only dates that exist, so these parse.
    if (query.due_before !== undefined)
      select = select.where('due_date', '<', parseDateOrDateTime(query.due_before) as Date)
    if (query.due_after !== undefined)
      select = select.where('due_date', '>', parseDateOrDateTime(query.due_after) as Date)

    if (query.cursor !== undefined) {
      const cursor: Cursor = decodeCursor(query.cursor, sortParam)
      const value = field === 'priority' ? Number(cursor.value) : sql`${String(cursor.value)}::timestamptz`
      select = descending
        ? select.where(sql<boolean>`(${expression}, id) < (${value}, ${cursor.id})`)
        : select.where(sql<boolean>`(${expression}, id) > (${value}, ${cursor.id})`)
    }

    const page = select
      .orderBy(expression, direction)
      .orderBy('id', direction)
      .limit(query.limit + 1)
    // A bounded cost per request: the statement runs under the list pool's timeout, and a search waits for a
    // turn in the search bulkhead.
    const run = () => this.limits.db.executeQuery(page.compile())
    const rows = (query.q !== undefined ? await this.limits.searches.run(run) : await run()).rows as TaskRow[]
    if (rows.length <= query.limit) return { rows, next: null }
    rows.length = query.limit
    const last = rows[rows.length - 1] as TaskRow
    return { rows, next: encodeCursor({ sort: sortParam, value: cursorValue(last, field), id: last.id }) }
  }
}
