import type { InboxDatabase, OutboxDatabase } from '@task-manager/events'
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'

export type ProjectStatus = 'active' | 'archived'
export type MemberRole = 'owner' | 'editor' | 'viewer'

export interface ProjectsTable {
  id: Generated<number>
  name: string
  description: string
  status: Generated<ProjectStatus>
  /** The user who created the project (its first owner); kept for the record, never used for access. */
  created_by: number | null
  created_at: ColumnType<Date, never, never>
  updated_at: ColumnType<Date, never, Date>
}

export interface ProjectMembersTable {
  project_id: number
  user_id: number
  role: MemberRole
  created_at: ColumnType<Date, never, never>
  updated_at: ColumnType<Date, never, Date>
}

export interface ProjectDatabase extends OutboxDatabase, InboxDatabase {
  projects: ProjectsTable
  project_members: ProjectMembersTable
}

export type ProjectRow = Selectable<ProjectsTable>
export type NewProjectRow = Insertable<ProjectsTable>
export type ProjectRowUpdate = Updateable<ProjectsTable>
export type MemberRow = Selectable<ProjectMembersTable>
