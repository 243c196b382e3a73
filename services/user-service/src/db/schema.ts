import type { Role } from '@task-manager/auth'
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'

export interface UsersTable {
  id: Generated<number>
  /** As the user typed it; unique case-insensitively (index on lower(email)). */
  email: string
  name: string
  /** `scrypt$logN$r$p$salt$hash`; never leaves the service. */
  password_hash: string
  role: ColumnType<Role, Role | undefined, Role>
  created_at: ColumnType<Date, never, never>
  updated_at: ColumnType<Date, never, Date>
}

export interface UserDatabase {
  users: UsersTable
}

export type UserRow = Selectable<UsersTable>
export type NewUserRow = Insertable<UsersTable>
export type UserRowUpdate = Updateable<UsersTable>
