import type { Role } from '@task-manager/auth'
import type { OutboxDatabase } from '@task-manager/events'
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
  /** Tokens of this user issued (`iat`) before this are refused; null until a first revocation. */
  valid_after: ColumnType<Date | null, never, Date>
}

/** Failed (and in-flight) logins per lower-cased email in the current window. */
export interface LoginFailuresTable {
  email: string
  window_started_at: ColumnType<Date, Date | undefined, Date>
  failures: number
}

export interface UserDatabase extends OutboxDatabase {
  users: UsersTable
  login_failures: LoginFailuresTable
}

export type UserRow = Selectable<UsersTable>
export type NewUserRow = Insertable<UsersTable>
export type UserRowUpdate = Updateable<UsersTable>
