import type { EventEnvelope, Outbox } from '@task-manager/events'
import { type Kysely, sql, type Transaction } from 'kysely'
import type pg from 'pg'
import type {
  MemberRole,
  MemberRow,
  ProjectDatabase,
  ProjectRow,
  ProjectRowUpdate,
  ProjectStatus,
} from '../db/schema.js'
import type { Member, Project } from './schemas.js'

export interface NewProject {
  name: string
  description: string
  status: ProjectStatus
}

export type ProjectWithRole = ProjectRow & { role: MemberRole | null }

export function toProject(row: ProjectWithRole): Project {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    status: row.status,
    role: row.role,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

export function toMember(row: MemberRow): Member {
  return {
    project_id: row.project_id,
    user_id: row.user_id,
    role: row.role,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

export interface ProjectListOptions {
  /** Only projects this user is a member of (their role comes along); all projects when absent. */
  memberId?: number
  status?: ProjectStatus
  /** Keyset pagination: projects with a larger id than this. */
  afterId?: number
  limit: number
}

/**
 * Changes to one project, made while holding its row lock. Every change (to the project or its members)
 * takes the lock first, so they run one after another and each re-checks the caller's role under it:
 * the "at least one owner" check and the change it guards see the same members (two owners leaving at
 * once cannot both pass), and a member demoted a moment ago can no longer write.
 */
export class LockedProject {
  /** Events of the changes made here, written to the outbox in the same transaction. */
  readonly events: EventEnvelope[] = []

  constructor(
    private readonly trx: Transaction<ProjectDatabase>,
    readonly project: ProjectRow,
    private readonly outbox: Outbox,
    private readonly traceparent: string | null,
  ) {}

  private emit(...args: Parameters<Outbox['event']>): void {
    this.events.push(this.outbox.event(args[0], args[1], this.traceparent))
  }

  async member(userId: number): Promise<MemberRow | undefined> {
    return this.trx
      .selectFrom('project_members')
      .selectAll()
      .where('project_id', '=', this.project.id)
      .where('user_id', '=', userId)
      .executeTakeFirst()
  }

  async memberCount(): Promise<number> {
    const { count } = await this.trx
      .selectFrom('project_members')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('project_id', '=', this.project.id)
      .executeTakeFirstOrThrow()
    return count
  }

  async ownerCount(): Promise<number> {
    const { count } = await this.trx
      .selectFrom('project_members')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('project_id', '=', this.project.id)
      .where('role', '=', 'owner')
      .executeTakeFirstOrThrow()
    return count
  }

  async add(userId: number, role: MemberRole): Promise<MemberRow> {
    const row = await this.trx
      .insertInto('project_members')
      .values({ project_id: this.project.id, user_id: userId, role })
      .returningAll()
      .executeTakeFirstOrThrow()
    this.emit('projects.member.added', { project_id: this.project.id, user_id: userId, role })
    return row
  }

  async setRole(userId: number, role: MemberRole): Promise<MemberRow> {
    const previous = await this.member(userId)
    const row = await this.trx
      .updateTable('project_members')
      .set({ role, updated_at: new Date() })
      .where('project_id', '=', this.project.id)
      .where('user_id', '=', userId)
      .returningAll()
      .executeTakeFirstOrThrow()
    if (previous && previous.role !== role) {
      this.emit('projects.member.role_changed', {
        project_id: this.project.id,
        user_id: userId,
        role,
        previous_role: previous.role,
      })
    }
    return row
  }

  /**
   * Removes a member. Their tasks go to `successor` (an owner who stays; by default the
   * longest-standing one), which the event carries so the task-service can reassign them.
   */
  async remove(userId: number, reason: 'removed' | 'left' | 'user_deleted' = 'removed'): Promise<void> {
    const deleted = await this.trx
      .deleteFrom('project_members')
      .where('project_id', '=', this.project.id)
      .where('user_id', '=', userId)
      .executeTakeFirst()
    if (deleted.numDeletedRows === 0n) return
    const successor = await this.trx
      .selectFrom('project_members')
      .select('user_id')
      .where('project_id', '=', this.project.id)
      .where('role', '=', 'owner')
      .orderBy('created_at')
      .orderBy('user_id')
      .executeTakeFirst()
    this.emit('projects.member.removed', {
      project_id: this.project.id,
      user_id: userId,
      reason,
      successor_id: successor?.user_id ?? null,
    })
  }

  /** The other members, owners first, then editors, then viewers; the longest-standing first in each. */
  async othersBySeniority(userId: number): Promise<MemberRow[]> {
    return this.trx
      .selectFrom('project_members')
      .selectAll()
      .where('project_id', '=', this.project.id)
      .where('user_id', '<>', userId)
      .orderBy(sql`case role when 'owner' then 0 when 'editor' then 1 else 2 end`)
      .orderBy('created_at')
      .orderBy('user_id')
      .execute()
  }

  async update(changes: Partial<NewProject>): Promise<ProjectRow> {
    const patch: ProjectRowUpdate = { ...changes, updated_at: new Date() }
    return this.trx
      .updateTable('projects')
      .set(patch)
      .where('id', '=', this.project.id)
      .returningAll()
      .executeTakeFirstOrThrow()
  }

  async deleteProject(reason: 'deleted' | 'last_member_deleted' = 'deleted'): Promise<void> {
    await this.trx.deleteFrom('projects').where('id', '=', this.project.id).execute()
    this.emit('projects.project.deleted', { project_id: this.project.id, reason })
  }
}

export class ProjectRepository {
  private readonly lookupText: string

  constructor(
    private readonly db: Kysely<ProjectDatabase>,
    private readonly pool: pg.Pool,
    private readonly outbox: Outbox,
  ) {
    // Built by Kysely once; the ids are placeholders ($1, $2, $3) filled per call.
    this.lookupText = db
      .selectFrom('project_members')
      .select(['user_id', 'role'])
      .where('project_id', '=', 0)
      .where('user_id', 'in', [0, 0])
      .compile().sql
  }

  /** Creates the project and makes `ownerId` its owner, atomically (with its event). */
  async create(
    project: NewProject,
    ownerId: number,
    traceparent: string | null = null,
  ): Promise<ProjectWithRole> {
    const created = await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('projects')
        .values({ ...project, created_by: ownerId })
        .returningAll()
        .executeTakeFirstOrThrow()
      // The owner's membership and its event in one statement: one round trip for both.
      await this.outbox.recordWith(
        trx,
        (db) =>
          db.insertInto('project_members').values({ project_id: row.id, user_id: ownerId, role: 'owner' }),
        [
          this.outbox.event(
            'projects.member.added',
            { project_id: row.id, user_id: ownerId, role: 'owner' },
            traceparent,
          ),
        ],
      )
      return { ...row, role: 'owner' as const }
    })
    this.outbox.committed()
    return created
  }

  /** The ids of the projects `userId` is a member of, in id order. */
  async projectIdsOf(userId: number): Promise<number[]> {
    const rows = await this.db
      .selectFrom('project_members')
      .select('project_id')
      .where('user_id', '=', userId)
      .orderBy('project_id')
      .execute()
    return rows.map((row) => row.project_id)
  }

  /** The project with `userId`'s role in it (null when not a member, or no user given): one query. */
  async find(id: number, userId: number | null): Promise<ProjectWithRole | undefined> {
    return this.db
      .selectFrom('projects')
      .leftJoin('project_members as m', (join) =>
        join.onRef('m.project_id', '=', 'projects.id').on('m.user_id', '=', userId ?? 0),
      )
      .selectAll('projects')
      .select('m.role')
      .where('projects.id', '=', id)
      .executeTakeFirst()
  }

  /** One page in id order, plus whether more follow. */
  async list(options: ProjectListOptions): Promise<{ rows: ProjectWithRole[]; more: boolean }> {
    const { memberId, status, afterId, limit } = options
    let query =
      memberId === undefined
        ? this.db.selectFrom('projects').selectAll('projects').select(sql<MemberRole | null>`null`.as('role'))
        : this.db
            .selectFrom('project_members as m')
            .innerJoin('projects', 'projects.id', 'm.project_id')
            .selectAll('projects')
            .select('m.role')
            .where('m.user_id', '=', memberId)
    if (status !== undefined) query = query.where('projects.status', '=', status)
    if (afterId !== undefined) query = query.where('projects.id', '>', afterId)
    const rows = (await query
      .orderBy('projects.id')
      .limit(limit + 1)
      .execute()) as ProjectWithRole[]
    const more = rows.length > limit
    if (more) rows.length = limit
    return { rows, more }
  }

  async member(projectId: number, userId: number): Promise<MemberRow | undefined> {
    return this.db
      .selectFrom('project_members')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('user_id', '=', userId)
      .executeTakeFirst()
  }

  async members(projectId: number): Promise<MemberRow[]> {
    return this.db
      .selectFrom('project_members')
      .selectAll()
      .where('project_id', '=', projectId)
      .orderBy('user_id')
      .execute()
  }

  /** One page of a user's memberships in project id order (an index-only walk of (user_id, project_id)). */
  async memberships(
    userId: number,
    afterProjectId: number | undefined,
    limit: number,
  ): Promise<{ rows: { project_id: number; role: MemberRole }[]; more: boolean }> {
    let query = this.db
      .selectFrom('project_members')
      .select(['project_id', 'role'])
      .where('user_id', '=', userId)
    if (afterProjectId !== undefined) query = query.where('project_id', '>', afterProjectId)
    const rows = await query
      .orderBy('project_id')
      .limit(limit + 1)
      .execute()
    const more = rows.length > limit
    if (more) rows.length = limit
    return { rows, more }
  }

  /**
   * The roles of (at most) two users in a project: the hot path behind the membership lookup every
   * task request makes. One primary-key index probe, sent as a named prepared statement so each pooled
   * connection parses and plans it once rather than on every call.
   */
  async roles(projectId: number, userA: number, userB: number): Promise<Map<number, MemberRole>> {
    const result = await this.pool.query<{ user_id: number; role: MemberRole }>({
      name: 'project-member-roles',
      text: this.lookupText,
      values: [projectId, userA, userB],
    })
    return new Map(result.rows.map((row) => [row.user_id, row.role]))
  }

  /**
   * Runs `fn` in a transaction holding the project's row lock (`SELECT … FOR UPDATE`); `fn` gets
   * undefined when the project does not exist. Throwing from `fn` rolls everything back.
   */
  async withLockedProject<T>(
    id: number,
    fn: (locked: LockedProject | undefined) => Promise<T>,
    traceparent: string | null = null,
  ): Promise<T> {
    let emitted = false
    const result = await this.db.transaction().execute(async (trx) => {
      const project = await trx
        .selectFrom('projects')
        .selectAll()
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst()
      return this.inLockedProject(trx, project, traceparent, async (locked) => {
        const value = await fn(locked)
        emitted = (locked?.events.length ?? 0) > 0
        return value
      })
    })
    if (emitted) this.outbox.committed()
    return result
  }

  /** Runs `fn` on an already locked project inside `trx`, then writes its events to the outbox there. */
  async inLockedProject<T>(
    trx: Transaction<ProjectDatabase>,
    project: ProjectRow | undefined,
    traceparent: string | null,
    fn: (locked: LockedProject | undefined) => Promise<T>,
  ): Promise<T> {
    const locked = project ? new LockedProject(trx, project, this.outbox, traceparent) : undefined
    const value = await fn(locked)
    if (locked) await this.outbox.record(trx, locked.events)
    return value
  }
}
