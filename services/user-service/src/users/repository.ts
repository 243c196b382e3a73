import type { Role } from '@task-manager/auth'
import type { Outbox } from '@task-manager/events'
import { type Kysely, sql, type Transaction } from 'kysely'
import type { UserDatabase, UserRow } from '../db/schema.js'

export class EmailTaken extends Error {
  override name = 'EmailTaken'
}

const UNIQUE_VIOLATION = '23505'
const isUniqueViolation = (error: unknown) => (error as { code?: unknown }).code === UNIQUE_VIOLATION

const byEmail = (email: string) => sql<boolean>`lower(email) = lower(${email})`

export type DeleteOutcome = 'deleted' | 'not-found' | 'last-admin'

/** Why a user's tokens are revoked (the `reason` of `users.user.tokens_revoked`). */
export type RevocationReason = 'password_changed' | 'role_changed' | 'logout'

/** Epoch seconds with millisecond precision, as tokens' `iat` and the events' `valid_after` carry them. */
export const epochSeconds = (date: Date) => date.getTime() / 1000

/**
 * The users table. Every change that must end a user's tokens (a password or role change, a logout, the
 * deletion) sets `valid_after` and writes its event to the outbox in the same transaction, so the event
 * leaves if and only if the change committed (docs/events.md).
 */
export class UserRepository {
  constructor(
    private readonly db: Kysely<UserDatabase>,
    private readonly outbox: Outbox,
  ) {}

  /** Sets valid_after = now on a locked user row and records the revocation event, inside `trx`. */
  private async revoke(
    trx: Transaction<UserDatabase>,
    id: number,
    reason: RevocationReason,
    traceparent: string | null,
  ): Promise<Date> {
    const validAfter = new Date()
    await trx.updateTable('users').set({ valid_after: validAfter }).where('id', '=', id).execute()
    await this.outbox.record(trx, [
      this.outbox.event(
        'users.user.tokens_revoked',
        { user_id: id, valid_after: epochSeconds(validAfter), reason },
        traceparent,
      ),
    ])
    return validAfter
  }

  /** Logout: every token of this user issued before now is refused. False when the user does not exist. */
  async revokeTokens(id: number, reason: RevocationReason, traceparent: string | null): Promise<boolean> {
    const revoked = await this.db.transaction().execute(async (trx) => {
      const user = await trx
        .selectFrom('users')
        .select('id')
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst()
      if (!user) return false
      await this.revoke(trx, id, reason, traceparent)
      return true
    })
    if (revoked) this.outbox.committed()
    return revoked
  }

  /** When the user's tokens stop being valid (null: never revoked), or undefined when there is no user. */
  async validAfter(id: number): Promise<Date | null | undefined> {
    const row = await this.db
      .selectFrom('users')
      .select('valid_after')
      .where('id', '=', id)
      .executeTakeFirst()
    return row ? row.valid_after : undefined
  }

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

  /** A changed password also revokes every token issued before (users.user.tokens_revoked). */
  async update(
    id: number,
    changes: { name?: string; email?: string; password_hash?: string },
    traceparent: string | null = null,
  ): Promise<UserRow | undefined> {
    try {
      const row = await this.db.transaction().execute(async (trx) => {
        const updated = await trx
          .updateTable('users')
          .set({ ...changes, updated_at: sql`now()` })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirst()
        if (updated && changes.password_hash !== undefined) {
          updated.valid_after = await this.revoke(trx, id, 'password_changed', traceparent)
        }
        return updated
      })
      if (row && changes.password_hash !== undefined) this.outbox.committed()
      return row
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
  async deleteUser(id: number, traceparent: string | null = null): Promise<DeleteOutcome> {
    const outcome = await this.db.transaction().execute(async (trx): Promise<DeleteOutcome> => {
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
      // The project-service removes the user from its projects; every verifier refuses their tokens.
      await this.outbox.record(trx, [
        this.outbox.event(
          'users.user.deleted',
          { user_id: id, valid_after: epochSeconds(new Date()) },
          traceparent,
        ),
      ])
      return 'deleted'
    })
    if (outcome === 'deleted') this.outbox.committed()
    return outcome
  }

  /** A role that actually changes also revokes the user's tokens (they carry the old role). */
  async setRole(id: number, role: Role, traceparent: string | null = null): Promise<UserRow | undefined> {
    let changed = false
    const row = await this.db.transaction().execute(async (trx) => {
      const current = await trx
        .selectFrom('users')
        .select('role')
        .where('id', '=', id)
        .forUpdate()
        .executeTakeFirst()
      if (!current) return undefined
      const updated = await trx
        .updateTable('users')
        .set({ role, updated_at: sql`now()` })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow()
      if (current.role !== role) {
        changed = true
        updated.valid_after = await this.revoke(trx, id, 'role_changed', traceparent)
      }
      return updated
    })
    if (changed) this.outbox.committed()
    return row
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
