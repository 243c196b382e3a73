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
  constructor(
    private readonly trx: Transaction<ProjectDatabase>,
    readonly project: ProjectRow,
  ) {}

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
    return this.trx
      .insertInto('project_members')
      .values({ project_id: this.project.id, user_id: userId, role })
      .returningAll()
      .executeTakeFirstOrThrow()
  }

  async setRole(userId: number, role: MemberRole): Promise<MemberRow> {
    return this.trx
      .updateTable('project_members')
      .set({ role, updated_at: new Date() })
      .where('project_id', '=', this.project.id)
      .where('user_id', '=', userId)
      .returningAll()
      .executeTakeFirstOrThrow()
  }

  async remove(userId: number): Promise<void> {
    await this.trx
      .deleteFrom('project_members')
      .where('project_id', '=', this.project.id)
      .where('user_id', '=', userId)
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

  async deleteProject(): Promise<void> {
    await this.trx.deleteFrom('projects').where('id', '=', this.project.id).execute()
  }
}

export class ProjectRepository {
  private readonly lookupText: string

  constructor(
    private readonly db: Kysely<ProjectDatabase>,
    private readonly pool: pg.Pool,
  ) {
    // Built by Kysely once; the ids are placeholders ($1, $2, $3) filled per call.
    this.lookupText = db
      .selectFrom('project_members')
      .select(['user_id', 'role'])
      .where('project_id', '=', 0)
      .where('user_id', 'in', [0, 0])
      .compile().sql
  }

  /** Creates the project and makes `ownerId` its owner, atomically. */
  async create(project: NewProject, ownerId: number): Promise<ProjectWithRole> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('projects')
        .values({ ...project, created_by: ownerId })
        .returningAll()
        .executeTakeFirstOrThrow()
      await trx
        .insertInto('project_members')
        .values({ project_id: row.id, user_id: ownerId, role: 'owner' })
        .execute()
      return { ...row, role: 'owner' as const }
    })
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
  async withLockedProject<T>(id: number, fn: (locked: LockedProject | undefined) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(async (trx) => {
      const project = await trx
        .selectFrom('projects')
        .selectAll()
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst()
      return fn(project ? new LockedProject(trx, project) : undefined)
    })
  }
}
