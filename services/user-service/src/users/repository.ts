import type { Role } from '@task-manager/auth'
import { type Kysely, sql } from 'kysely'
import type { UserDatabase, UserRow } from '../db/schema.js'

export class EmailTaken extends Error {
  override name = 'EmailTaken'
}

const UNIQUE_VIOLATION = '23505'
const isUniqueViolation = (error: unknown) => (error as { code?: unknown }).code === UNIQUE_VIOLATION

const byEmail = (email: string) => sql<boolean>`lower(email) = lower(${email})`

export type DeleteOutcome = 'deleted' | 'not-found' | 'last-admin'

export class UserRepository {
  constructor(private readonly db: Kysely<UserDatabase>) {}

  async create(user: { email: string; name: string; password_hash: string }): Promise<UserRow> {
    try {
      return await this.db.insertInto('users').values(user).returningAll().executeTakeFirstOrThrow()
    } catch (error) {
      if (isUniqueViolation(error)) throw new EmailTaken(user.email)
      throw error
    }
  }

  findById(id: number): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()
  }

  findByEmail(email: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where(byEmail(email)).executeTakeFirst()
  }

  async update(
    id: number,
    changes: { name?: string; email?: string; password_hash?: string },
  ): Promise<UserRow | undefined> {
    try {
      return await this.db
        .updateTable('users')
        .set({ ...changes, updated_at: sql`now()` })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirst()
    } catch (error) {
      if (isUniqueViolation(error)) throw new EmailTaken(changes.email ?? '')
      throw error
    }
  }

  /** Replaces a hash made with outdated parameters (only if it is still the one that was checked). */
  async upgradeHash(id: number, previous: string, next: string): Promise<void> {
    await this.db
      .updateTable('users')
      .set({ password_hash: next })
      .where('id', '=', id)
      .where('password_hash', '=', previous)
      .execute()
  }

  /**
   * Deletes a user, refusing to delete the last admin. The admin rows are locked for the check, so two
   * admins deleting each other at once can't leave none.
   */
  deleteUser(id: number): Promise<DeleteOutcome> {
    return this.db.transaction().execute(async (trx) => {
      const user = await trx
        .selectFrom('users')
        .select(['id', 'role'])
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst()
      if (!user) return 'not-found'
      if (user.role === 'admin') {
        const admins = await trx
          .selectFrom('users')
          .select('id')
          .where('role', '=', 'admin')
          .forUpdate()
          .execute()
        if (admins.length <= 1) return 'last-admin'
      }
      await trx.deleteFrom('users').where('id', '=', id).execute()
      return 'deleted'
    })
  }

  async setRole(id: number, role: Role): Promise<UserRow | undefined> {
    return this.db
      .updateTable('users')
      .set({ role, updated_at: sql`now()` })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst()
  }

  /**
   * The configured first admin: created with this password hash if the email is new, promoted (password
   * untouched) if the account exists. One statement, so replicas starting together agree.
   */
  async ensureAdmin(
    email: string,
    name: string,
    passwordHash: string,
  ): Promise<{ id: number; created: boolean }> {
    const row = await this.db
      .insertInto('users')
      .values({ email, name, password_hash: passwordHash, role: 'admin' })
      .onConflict((conflict) => conflict.expression(sql`lower(email)`).doUpdateSet({ role: 'admin' }))
      .returning(['id', sql<boolean>`(xmax = 0)`.as('created')])
      .executeTakeFirstOrThrow()
    return { id: row.id, created: row.created }
  }
}
