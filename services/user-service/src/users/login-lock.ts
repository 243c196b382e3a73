import { type Kysely, sql } from 'kysely'
import type { UserDatabase } from '../db/schema.js'

export type Reservation =
  | { allowed: true; windowStartedAt: Date }
  | { allowed: false; retryAfterSeconds: number }

/**
 * The per-email login lock, decided atomically in the database. Each attempt first reserves a failure
 * (one upsert that also starts a new window when the old one ended); only an attempt whose reservation
 * fits under the limit gets its password checked, so N concurrent guesses make at most `limit` checks,
 * on any number of replicas. A successful login gives its reservation back.
 */
export class LoginLock {
  constructor(
    private readonly db: Kysely<UserDatabase>,
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}

  async reserve(email: string): Promise<Reservation> {
    const windowSeconds = this.windowMs / 1000
    const expired = sql<boolean>`login_failures.window_started_at <= now() - make_interval(secs => ${windowSeconds})`
    const row = await this.db
      .insertInto('login_failures')
      .values({ email, failures: 1 })
      .onConflict((oc) =>
        oc.column('email').doUpdateSet({
          failures: sql`case when ${expired} then 1 else login_failures.failures + 1 end`,
          window_started_at: sql`case when ${expired} then now() else login_failures.window_started_at end`,
        }),
      )
      .returning([
        'failures',
        'window_started_at',
        sql<number>`extract(epoch from (window_started_at + make_interval(secs => ${windowSeconds}) - now()))`.as(
          'remaining',
        ),
      ])
      .executeTakeFirstOrThrow()
    if (row.failures > this.limit) {
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(Number(row.remaining))) }
    }
    return { allowed: true, windowStartedAt: row.window_started_at }
  }

  /** Gives a reservation back (the password was right, or it could not be checked). */
  async release(email: string, reservation: Reservation): Promise<void> {
    if (!reservation.allowed) return
    await this.db
      .updateTable('login_failures')
      .set({ failures: sql`greatest(failures - 1, 0)` })
      .where('email', '=', email)
      .where('window_started_at', '=', reservation.windowStartedAt)
      .execute()
  }

  /** Forgets windows that ended; run periodically. */
  async purgeExpired(): Promise<number> {
    const result = await this.db
      .deleteFrom('login_failures')
      .where(sql<boolean>`window_started_at <= now() - make_interval(secs => ${this.windowMs / 1000})`)
      .executeTakeFirst()
    return Number(result.numDeletedRows)
  }
}
